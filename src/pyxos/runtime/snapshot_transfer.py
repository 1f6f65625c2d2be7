"""Streaming snapshots between nodes in chunks, resumable, in bounded memory.

The core decides *that* a peer needs our snapshot (``Ready.snapshots_to_send``); this
module moves the bytes. The sender reads one chunk at a time from the snapshot file and
sends the next only when the receiver acknowledges the previous one (stop-and-wait keeps
at most one chunk per peer in memory and leaves the link to the protocol's messages). The
receiver appends each chunk to a partial file that survives restarts and always answers
with the offset it wants next, so after a lost chunk, a reconnect or a restart the
transfer resumes where it stopped. When the file is complete, checked and made durable,
the core is told to jump to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Message, SnapshotChunk, SnapshotChunkAck
from pyxos.core.replica import Replica
from pyxos.runtime.config import NodeConfig
from pyxos.storage import Storage, StorageError

if TYPE_CHECKING:
    from pyxos.storage.incoming import FileIncomingSnapshot
    from pyxos.storage.snapshots import FileSnapshotReader

T = TypeVar("T")


class SnapshotHost(Protocol):
    """What snapshot transfer needs of the node it runs in (its public surface)."""

    @property
    def id(self) -> int: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def replica(self) -> Replica: ...

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]: ...

    def send(self, dst: int, message: Message) -> None: ...

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T: ...

    def fail(self, reason: str) -> None: ...

    def install_received_snapshot(
        self,
        src: int,
        last_slot: int,
        members: tuple[int, ...],
        ballot: Ballot,
        membership: bytes = b"",
    ) -> None: ...


RESEND_AFTER = 1.0
"""Seconds without an ack before a chunk is sent again."""


@dataclass(slots=True)
class _Outgoing:
    reader: FileSnapshotReader
    offset: int
    sent_at: float


class SnapshotTransfers:
    """Every snapshot this node is sending or receiving."""

    def __init__(self, node: SnapshotHost) -> None:
        self._node = node
        self._out: dict[int, _Outgoing] = {}
        self._in: FileIncomingSnapshot | None = None
        self._in_src = 0
        self._busy = False

    def close(self) -> None:
        for out in self._out.values():
            out.reader.close()
        self._out.clear()
        if self._in is not None:
            self._in.close()
            self._in = None

    # ------------------------------------------------------------------ sending

    def send_to(self, peer: int) -> None:
        """Start (or nudge a stalled) transfer of our newest snapshot to ``peer``."""
        out = self._out.get(peer)
        if out is not None:
            if time.monotonic() - out.sent_at >= RESEND_AFTER:
                self._send_chunk(peer, out)
            return
        reader = self._node.storage.open_snapshot()
        if reader is None:
            return
        out = _Outgoing(reader, 0, 0.0)
        self._out[peer] = out
        self._node.log.info(
            "sending snapshot through slot %d (%d bytes) to node %d",
            reader.info.last_slot,
            reader.size,
            peer,
        )
        self._send_chunk(peer, out)

    def _send_chunk(self, peer: int, out: _Outgoing) -> None:
        info = out.reader.info
        data = out.reader.read(out.offset, self._node.config.snapshot_chunk)
        chunk = SnapshotChunk(
            self._node.id,
            info.last_slot,
            info.members,
            out.offset,
            info.size,
            info.checksum,
            data,
            info.ballot,
            # The configurations of the slots after it may rest on compacted changes.
            self._node.replica.history.encode(),
        )
        out.sent_at = time.monotonic()
        self._node.send(peer, chunk)

    def _on_ack(self, m: SnapshotChunkAck) -> None:
        out = self._out.get(m.src)
        if out is None or out.reader.info.last_slot != m.last_slot:
            return
        if m.next_offset < 0 or m.next_offset >= out.reader.size:
            out.reader.close()
            del self._out[m.src]
            return
        out.offset = m.next_offset
        self._send_chunk(m.src, out)

    # ------------------------------------------------------------------ receiving

    def on_message(self, m: SnapshotChunk | SnapshotChunkAck) -> None:
        if isinstance(m, SnapshotChunkAck):
            self._on_ack(m)
            return
        if self._busy:
            return  # the sender resends after RESEND_AFTER
        node = self._node
        if m.last_slot <= node.replica.commit_index:
            node.send(m.src, SnapshotChunkAck(node.id, m.last_slot, -1))
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._receive(m))

    async def _receive(self, m: SnapshotChunk) -> None:
        node = self._node
        try:
            incoming = self._in
            if incoming is None or incoming.record.last_slot != m.last_slot:
                if incoming is not None:
                    incoming.abort()
                incoming = await node.run_io(
                    node.storage.begin_incoming,
                    m.last_slot,
                    # Recorded as this node's own --cluster (checked at its restarts); the
                    # sender's may differ, a node that joined later listing more.
                    tuple(sorted(node.config.members)),
                    m.total,
                    m.checksum,
                    m.ballot,
                    m.membership,
                )
                self._in, self._in_src = incoming, m.src
            nxt = await node.run_io(incoming.write_chunk, m.offset, m.data)
            if nxt >= m.total:
                await node.run_io(incoming.finish)
                self._in = None
                node.log.info("received snapshot through slot %d from node %d", m.last_slot, m.src)
                node.install_received_snapshot(
                    m.src, m.last_slot, m.members, m.ballot, m.membership
                )
            node.send(m.src, SnapshotChunkAck(node.id, m.last_slot, nxt))
        except StorageError as exc:
            node.fail(f"storage failed while receiving a snapshot: {exc}")
        except ValueError as exc:
            # A damaged or stale transfer: drop it, the core asks again later.
            node.log.warning("snapshot from node %d rejected: %s", m.src, exc)
            if self._in is not None:
                self._in.abort()
                self._in = None
            node.send(m.src, SnapshotChunkAck(node.id, m.last_slot, -1))
        finally:
            self._busy = False
