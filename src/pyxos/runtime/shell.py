"""The asyncio shell around the shared driver: writes, sends, applies, snapshots.

:class:`pyxos.core.driver.Driver` decides what to do with each batch; this shell does it
with real I/O: one write at a time on the I/O thread (the event loop keeps receiving and
stepping the core meanwhile, so the next batch grows while this one syncs), messages to
the transport, committed commands to the state machine (answering the callers waiting on
them), reads served once applied through their index, and the node's own snapshots
captured between batches and saved on a thread of their own.

No protocol decision is made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pyxos.core.ballot import Ballot
from pyxos.core.driver import Driver, Work, fresh_commits
from pyxos.core.membership import MARK
from pyxos.core.messages import Message
from pyxos.core.options import Role
from pyxos.core.ready import Persist
from pyxos.core.replica import InvariantViolation, Replica
from pyxos.core.statemachine import ConcurrentSnapshots, StateMachine
from pyxos.runtime import envelope
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.metrics import NodeMetrics
from pyxos.runtime.requests import Requests
from pyxos.storage import StaleSnapshotError, Storage, StorageError

LoggerLike = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass(slots=True)
class ShellLinks:
    """Everything the shell drives, handed over by the node that owns it."""

    config: NodeConfig
    replica: Replica
    driver: Driver
    storage: Storage
    sm: StateMachine
    requests: Requests
    metrics: NodeMetrics
    log: LoggerLike
    send: Callable[[int, Message], object]
    send_snapshot: Callable[[int], None]
    fail: Callable[[str], None]
    """Stop the node: it must never go on with state it could not persist."""
    changed: Callable[[], None]
    """The core may have changed role, leader or standing: look, and wake the loop."""
    identity: tuple[int, int]
    """(node id, process incarnation): whose commands' replies this node answers."""
    on_membership: Callable[[Work], None] = lambda work: None
    """Outcomes of membership changes and transfers, and removal, in a batch."""
    slow_writes: float = 0.0
    """A planted bug's delay before each write reaches the disk (``pyxos.faults``)."""


class Shell:
    """Carries out one node's batches; see the module docstring."""

    def __init__(self, links: ShellLinks, applied: int, last_snapshot: int) -> None:
        self.links = links
        self.applied = applied
        """The last slot applied to the state machine here."""
        self.last_snapshot = last_snapshot
        self.io = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"pyxos-io-{links.config.node_id}"
        )
        # Snapshots are saved and decoded on a thread of their own, so that log writes
        # (and so commits) go on while a big state is serialized or installed.
        self.snapshot_io = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"pyxos-snapshot-{links.config.node_id}"
        )
        self.snapshot_task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    # ------------------------------------------------------------------ batches

    async def drain(self) -> None:
        """Take and carry out batches while the driver has any (and a write may wait)."""
        links = self.links
        while links.driver.can_take() and not self.closed:
            work = links.driver.take()
            if work.install is not None and work.install.last_slot > self.applied:
                # Decoded in a worker thread; what the batch commits after the snapshot is
                # applied once it is swapped in.
                await self.install_snapshot()
            self.carry_out(work)
            links.changed()
            self.maybe_snapshot()

    def carry_out(self, work: Work) -> None:
        links = self.links
        if work.changes or work.change_errors or work.removed is not None:
            links.on_membership(work)  # first: a new member's peer link, before its messages
        send = links.send
        for dst, message in work.send:
            send(dst, message)
        if work.write is not None:
            self._start_write(work.write)
        if work.committed:
            self._apply(fresh_commits(work.committed, self.applied))
        requests = links.requests
        for token, index in work.reads:
            requests.read_confirmed(token, index)
        for token in work.failed_reads:
            requests.read_refused(token)
        requests.serve(self.applied)
        for peer in work.snapshots_to_send:
            links.send_snapshot(peer)

    def _start_write(self, persist: Persist) -> None:
        """One write (one transaction, one sync) at a time: on the I/O thread, or inline."""
        loop = self.loop or asyncio.get_running_loop()
        delay = self.links.slow_writes
        if delay:
            # A planted bug: the write reaches the disk late, so a crash in between loses
            # what the bug already acknowledged.
            loop.call_later(delay, self._submit_write, persist, loop)
        else:
            self._submit_write(persist, loop)

    def _inline(self, persist: Persist) -> bool:
        """Whether to write this batch on the event loop's own thread.

        Only with ``NodeConfig.inline_writes`` (off by default: see there for the price).
        A follower's loop has little else to do while its batch syncs: what arrives
        meanwhile waits in the socket buffers and joins the next batch, exactly as it would
        have waited for the I/O thread. Writing inline saves the two thread hand-overs of
        every batch (the I/O thread woken through the executor's queue, the loop woken
        back through its self-pipe), the contention for the interpreter lock between the
        two threads, and their latency.

        A leader keeps the I/O thread: its Proposes reach the sockets only on a later turn
        of its loop (the peer writers are tasks), so writing inline would hold them back
        until its own sync is done and put that sync in series with the followers'
        (measured: one client's p50 went from 1.17 to 1.25 ms). Big writes (a snapshot's
        file, a compaction) and writes while this node saves a snapshot (which holds the
        store's lock while it compacts) go to the I/O thread too.
        """
        return (
            self.links.config.inline_writes
            and self.snapshot_task is None
            and persist.snapshot is None
            and persist.compact_through is None
            and self.links.replica.role is not Role.LEADER
        )

    def _submit_write(self, persist: Persist, loop: asyncio.AbstractEventLoop) -> None:
        if self.closed:
            return
        started = time.perf_counter()
        if self._inline(persist):
            error: BaseException | None = None
            try:
                self.links.storage.write(persist)
            except Exception as exc:  # reported as the thread's failure would be
                error = exc
            # Released on the next turn of the loop: what arrived during the sync is read
            # first (and batched into the next write), and no write nests in another.
            loop.call_soon(self._written, persist, started, error)
            return
        future = asyncio.wrap_future(self.io.submit(self.links.storage.write, persist), loop=loop)
        future.add_done_callback(functools.partial(self._write_done, persist, started))

    def _write_done(self, persist: Persist, started: float, future: asyncio.Future[None]) -> None:
        if self.closed or future.cancelled():
            return
        self._written(persist, started, future.exception())

    def _written(self, persist: Persist, started: float, error: BaseException | None) -> None:
        """The write is durable: release what waited on it (Promises, Accepteds, our own
        votes) and start the next one."""
        links = self.links
        if self.closed:
            return
        if error is not None:
            links.fail(f"storage failed: {error}")
            return
        if persist.must_sync:
            links.metrics.fsync_seconds.observe(time.perf_counter() - started)
        links.metrics.batch_entries.observe(len(persist.entries))
        try:
            work = links.driver.written()  # may finish phase 1 or choose slots
        except InvariantViolation as exc:
            links.fail(f"broken invariant: {exc}")
            return
        self.carry_out(work)
        links.changed()

    def _apply(self, committed: list[tuple[int, tuple[bytes, ...]]]) -> None:
        sm = self.links.sm
        replied = self.links.requests.replied
        me_id, me_inc = self.links.identity
        header, unpack_from = envelope.HEADER_SIZE, envelope.HEADER.unpack_from
        apply = sm.apply
        count = 0
        for slot, value in committed:
            if len(value) == 2 and value[0] == MARK:
                # A membership change: the core acted on it; no command of the app's.
                self.applied = slot
                continue
            for command in value:
                if len(command) < header:
                    apply(command)
                    continue
                origin, inc, seq = unpack_from(command)
                reply = apply(command[header:])
                if origin == me_id and inc == me_inc:
                    replied(seq, reply)
            count += len(value)
            self.applied = slot
        self.links.metrics.commands_applied.inc(count)
        self.links.metrics.slots_applied.inc(len(committed))

    # ------------------------------------------------------------------ snapshots

    async def install_snapshot(self) -> None:
        """Replace the state machine with the durable snapshot storage holds now.

        Reading and decoding run on the snapshot thread (the event loop keeps answering
        heartbeats); only the final swap runs here. ``applied`` becomes the slot of the
        snapshot actually read, which may be newer than the one the core asked for (one
        more finished arriving meanwhile): the slots it covers are then not applied again.
        """
        loop = asyncio.get_running_loop()
        sm, storage = self.links.sm, self.links.storage

        def prepare() -> tuple[int, Callable[[], None]]:
            reader = storage.open_snapshot()
            if reader is None:
                raise StorageError("the core installed a snapshot that storage does not hold")
            try:
                info = reader.info
                data = reader.read(0, info.size)
            finally:
                reader.close()
            if len(data) != info.size or zlib.crc32(data) != info.checksum:
                raise StorageError(f"snapshot through slot {info.last_slot} fails its checksum")
            if isinstance(sm, ConcurrentSnapshots):
                return info.last_slot, sm.prepare_restore(data)
            return info.last_slot, functools.partial(sm.restore, data)

        started = time.perf_counter()
        last_slot, swap = await loop.run_in_executor(self.snapshot_io, prepare)
        if last_slot <= self.applied:
            return  # already past it
        swap()
        self.applied = last_slot
        self.last_snapshot = max(self.last_snapshot, last_slot)
        self.links.log.info(
            "installed snapshot through slot %d in %.3fs", last_slot, time.perf_counter() - started
        )

    def maybe_snapshot(self) -> None:
        """Start saving a snapshot in the background once enough slots were applied."""
        if self.snapshot_task is not None or self.closed:
            return
        if self.applied - self.last_snapshot < self.links.config.snapshot_every:
            return
        sm = self.links.sm
        # The capture happens here, between two applied batches; the encoding, the write
        # and the fsync happen on the snapshot thread while the node keeps committing.
        data: bytes | Iterator[bytes] = (
            sm.snapshot_stream() if isinstance(sm, ConcurrentSnapshots) else sm.snapshot()
        )
        # Our promise now bounds the ballot every slot in the state was chosen at.
        floor = self.links.replica.promised
        # The membership goes with it: the changes it compacts are in this history.
        membership = self.links.replica.history.encode()
        self.snapshot_task = asyncio.get_running_loop().create_task(
            self._save_snapshot(self.applied, data, floor, membership),
            name=f"pyxos-snapshot-{self.links.config.node_id}",
        )

    async def _save_snapshot(
        self, last: int, data: bytes | Iterator[bytes], floor: Ballot, membership: bytes
    ) -> None:
        links = self.links
        loop = asyncio.get_running_loop()
        members = tuple(sorted(links.config.members))
        started = time.perf_counter()
        try:
            info = await loop.run_in_executor(
                self.snapshot_io,
                links.storage.save_snapshot,
                last,
                members,
                data,
                floor,
                membership,
            )
        except StaleSnapshotError:
            return  # a newer snapshot was installed from the leader meanwhile
        except StorageError as exc:
            links.fail(f"storage failed while saving a snapshot: {exc}")
            return
        finally:
            self.snapshot_task = None
        if self.closed:
            return
        self.last_snapshot = max(self.last_snapshot, last)
        links.replica.compact(last)
        links.metrics.snapshots.inc()
        links.changed()
        links.log.info(
            "snapshot through slot %d (%d bytes) in %.3fs, log compacted",
            last,
            info.size,
            time.perf_counter() - started,
        )

    async def close(self) -> None:
        """Stop writing; wait for the snapshot and I/O threads."""
        self.closed = True
        task = self.snapshot_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.snapshot_io.shutdown(wait=True)
        self.io.shutdown(wait=True)
