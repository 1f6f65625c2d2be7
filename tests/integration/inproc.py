"""Several runtime nodes in one event loop, on 127.0.0.1, for fast integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec

from pyxos.core.replica import Role
from pyxos.launch.local_cluster import free_ports
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.node import Node


class ListMachine:
    """Appends every command to a list; replies with the new length."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def apply(self, command: bytes) -> bytes:
        self.items.append(command)
        return b"%d" % len(self.items)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.items)

    def restore(self, data: bytes) -> None:
        self.items = msgspec.msgpack.decode(data, type=list[bytes])


class InprocCluster:
    def __init__(
        self,
        root: Path,
        n: int = 3,
        machine: Callable[[], ListMachine] = ListMachine,
        **options: object,
    ) -> None:
        self.root = root
        self.members = {i + 1: ("127.0.0.1", p) for i, p in enumerate(free_ports(n))}
        self.make_machine = machine
        self.options = options
        self.nodes: dict[int, Node] = {}
        self.fatal: dict[int, str] = {}

    def config(self, i: int) -> NodeConfig:
        return NodeConfig(i, self.members, self.root / f"n{i}", **self.options)  # type: ignore[arg-type]

    async def start(self, i: int | None = None) -> None:
        for k in [i] if i is not None else list(self.members):
            node = Node(
                self.config(k),
                self.make_machine(),
                on_fatal=lambda r, k=k: self.fatal.__setitem__(k, r),
            )
            await node.start()
            self.nodes[k] = node

    async def stop(self, i: int) -> None:
        node = self.nodes.pop(i)
        await node.close()

    async def close(self) -> None:
        for i in list(self.nodes):
            await self.stop(i)

    async def leader(self, timeout: float = 10.0) -> Node:
        """The node every live node agrees leads (awaits leader-change events)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leaders = [n for n in self.nodes.values() if n.role is Role.LEADER and not n.failed]
            if len(leaders) == 1 and all(
                n.leader_id == leaders[0].id for n in self.nodes.values() if not n.failed
            ):
                return leaders[0]
            if loop.time() > deadline:
                raise TimeoutError(f"no agreed leader: {[n.status() for n in self.nodes.values()]}")
            await next(iter(self.nodes.values())).wait_for_change(deadline - loop.time())

    def machine(self, i: int) -> ListMachine:
        sm = self.nodes[i].sm
        assert isinstance(sm, ListMachine)
        return sm
