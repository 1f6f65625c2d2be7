"""A fault-injecting TCP proxy for every directed peer link (no root needed).

Node *a* reaches node *b* through its own proxy ``(a, b)``, and each direction of a pair
travels over a different proxy, because a node's messages to a peer always use the
connection that node dialled. So one proxy per ordered pair can cut a link one way
(asymmetric partitions), both ways (symmetric ones), or slow it down.

Modes of a link:

- ``pass``: bytes flow unchanged;
- ``drop``: bytes are swallowed silently while connections stay open, like a partition in
  which TCP keeps waiting; new connections are accepted and then starved the same way;
- ``delay``: every chunk is held for ``delay`` seconds, order kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field

log = logging.getLogger("pyxos.chaos.proxy")


@dataclass(slots=True)
class Link:
    """One directed link ``src -> dst`` and its proxy."""

    src: int
    dst: int
    target: tuple[str, int]
    mode: str = "pass"
    delay: float = 0.0
    port: int = 0
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    bytes_passed: int = 0
    bytes_dropped: int = 0


class LinkProxies:
    """All the links of a cluster; call :meth:`start` with the real peer addresses."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.links: dict[tuple[int, int], Link] = {}

    async def start(
        self, targets: dict[int, tuple[str, int]], ports: dict[tuple[int, int], int]
    ) -> None:
        """Listen on ``ports[(a, b)]`` for every ordered pair, forwarding to ``targets[b]``."""
        for (a, b), port in ports.items():
            link = Link(a, b, targets[b], port=port)
            link.server = await asyncio.start_server(
                functools.partial(self._accept, link), self.host, port
            )
            self.links[(a, b)] = link

    async def close(self) -> None:
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            for task in list(link.tasks):
                task.cancel()
        for link in self.links.values():
            for task in list(link.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def set(self, src: int, dst: int, mode: str, delay: float = 0.0) -> None:
        link = self.links[(src, dst)]
        link.mode, link.delay = mode, delay

    def heal(self) -> None:
        for link in self.links.values():
            link.mode, link.delay = "pass", 0.0

    async def _accept(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*link.target)
        except OSError:
            writer.close()
            return
        for src, dst, forward in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(link, src, dst, forward))
            link.tasks.add(task)
            task.add_done_callback(link.tasks.discard)

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, forward: bool
    ) -> None:
        """Copy bytes one way, applying the link's mode (answers on the link too).

        A delayed chunk holds up the ones behind it, so order is kept; whatever arrives
        meanwhile is read as one larger chunk next, so throughput survives the delay.
        """
        del forward
        try:
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                if link.mode == "drop":
                    link.bytes_dropped += len(data)
                    continue
                if link.mode == "delay" and link.delay > 0:
                    await asyncio.sleep(link.delay)
                writer.write(data)
                link.bytes_passed += len(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
