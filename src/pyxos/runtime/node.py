"""The asyncio driver: one protocol core, its disk, its peers and its state machine.

The loop is the one ``pyxos.core.ready`` prescribes: send what needs no disk, write the
batch and fsync it in a worker thread (the event loop keeps receiving and stepping the
core meanwhile, so the next batch grows while this one syncs: group commit), then send
what depended on the write, apply chosen commands, serve reads, ``advance``.

No protocol decision is made here; this module only moves bytes between the core, the
disk, the network and the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyxos.core.config import Config
from pyxos.core.messages import InstallSnapshot, Message, SnapshotChunk, SnapshotChunkAck
from pyxos.core.ready import Persist, Ready
from pyxos.core.replica import Replica, Role
from pyxos.core.statemachine import ConcurrentSnapshots, StateMachine
from pyxos.runtime import envelope
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.errors import NodeFailed, Unavailable, UnknownOutcome
from pyxos.runtime.metrics import NodeMetrics
from pyxos.runtime.snapshot_transfer import SnapshotTransfers
from pyxos.storage import StaleSnapshotError, StorageError, open_storage
from pyxos.transport import Transport

T = TypeVar("T")

log = logging.getLogger("pyxos.node")

MAX_WRITES_IN_FLIGHT = 64
"""Batches taken but not yet durable, at most (they share group-committed writes)."""


def _barrier() -> None:
    """An empty job for the I/O thread: it completes once every earlier write has."""


def _merge(batches: list[Persist]) -> Persist:
    """Several batches' writes as one transaction, later batches winning."""
    if len(batches) == 1:
        return batches[0]
    out = Persist()
    for p in batches:
        if p.promised is not None:
            out.promised = p.promised
        out.entries.extend(p.entries)
        if p.commit_index is not None:
            out.commit_index = max(out.commit_index or 0, p.commit_index)
        if p.snapshot is not None:
            out.snapshot = p.snapshot
        if p.compact_through is not None:
            out.compact_through = max(out.compact_through or 0, p.compact_through)
        out.must_sync |= p.must_sync
    return out


class Node:
    """A running replica. ``await start()``, then ``submit`` commands and ``read`` state."""

    def __init__(
        self,
        config: NodeConfig,
        state_machine: StateMachine,
        *,
        on_fatal: Callable[[str], None] | None = None,
        test_bug: str | None = None,
    ) -> None:
        self.config = config
        self.sm = state_machine
        self.id = config.node_id
        self.log = logging.LoggerAdapter(log, {"node": self.id})
        self.metrics = NodeMetrics(self.id)
        self._on_fatal = on_fatal
        self._incarnation = int.from_bytes(os.urandom(8), "big") >> 1
        self._seq = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._read_tokens = itertools.count(1)
        self._read_waiters: dict[int, asyncio.Future[bool]] = {}
        self._deadlines: list[tuple[float, int, bool]] = []
        self._read_ready: list[tuple[int, int]] = []
        self._wake = asyncio.Event()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pyxos-io-{self.id}")
        # Snapshots are saved and decoded on a thread of their own, so that log writes
        # (and so commits) go on while a big state is serialized or installed.
        self._snap_io = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"pyxos-snapshot-{self.id}"
        )
        self._snapshot_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """Set by :meth:`start`. Cached because ``asyncio.get_running_loop`` makes a
        ``getpid`` system call each time, and the per-command paths would pay it."""
        self._closed = False
        self.failed: str | None = None
        self.applied = 0
        self._last_snapshot = 0
        self._deferred_commit: int | None = None
        self._writes_in_flight = 0
        self._write_queue: list[Ready] = []
        self._writing = False
        self._leader_changes: list[asyncio.Future[None]] = []
        self._changed = asyncio.Event()
        self.storage = open_storage(
            config.storage,
            config.data_dir,
            node_id=self.id,
            cluster_id=config.cluster_id,
            members=tuple(sorted(config.members)),
            sync=test_bug != "skip-fsync",
        )
        state, snapshot = self.storage.load()
        if snapshot is not None:
            self.sm.restore(self.storage.read_snapshot())
            self.applied = snapshot.last_slot
            self._last_snapshot = snapshot.last_slot
        self.test_bug = test_bug
        replica_class = Replica
        if test_bug is not None:
            from pyxos.runtime.bugs import BUGS, SkipsReproposal

            if test_bug not in BUGS:
                raise ValueError(f"unknown test bug {test_bug!r}")
            self.log.warning(
                "TEST BUG %s is switched on: this node is deliberately unsafe", test_bug
            )
            if test_bug == "skip-reproposal":
                replica_class = SkipsReproposal
        self.replica = replica_class(
            self.id,
            Config.of(config.members),
            random.Random(),
            config.options(),
            state,
        )
        self.transport = Transport(
            self.id,
            config.cluster_id,
            config.secret,
            config.members,
            self._on_message,
            config=config.transport,
        )
        self.snapshots = SnapshotTransfers(self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen for peers and start ticking."""
        await self.transport.start()
        self._loop = loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.config.tick_seconds, self._tick)
        self._tasks.append(asyncio.create_task(self._drive(), name=f"pyxos-drive-{self.id}"))
        self.log.info(
            "node %d started: %s, commit %d, applied %d",
            self.id,
            self.replica.role.value,
            self.replica.commit_index,
            self.applied,
        )

    async def close(self) -> None:
        """Stop serving; fail every waiting caller with :class:`Unavailable`."""
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        tasks = [*self._tasks, *([self._snapshot_task] if self._snapshot_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()
        self.snapshots.close()
        self._fail_waiters(Unavailable("node stopped"))
        self._snap_io.shutdown(wait=True)
        self._io.shutdown(wait=True)
        self.storage.close()

    # ------------------------------------------------------------------ client API

    @property
    def role(self) -> Role:
        return self.replica.role

    @property
    def leader_id(self) -> int | None:
        return self.replica.leader

    def submit_future(self, payload: bytes, timeout: float = 5.0) -> asyncio.Future[bytes] | None:
        """Propose ``payload`` now; the future gets the reply once it is applied here.

        Returns None when no leader is known (nothing was proposed: use :meth:`submit`,
        which waits for one). The future fails with :class:`UnknownOutcome` after
        ``timeout`` or when the leader changes while the command is in flight. This is the
        server's fast path: no task and no timer per command.
        """
        self._check_alive()
        seq = next(self._seq)
        if not self.replica.propose(envelope.pack(self.id, self._incarnation, seq, payload)):
            return None
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiters[seq] = future
        heapq.heappush(self._deadlines, (loop.time() + timeout, seq, False))
        self.metrics.proposals.inc()
        self._wake.set()
        return future

    async def submit(self, payload: bytes, timeout: float = 5.0) -> bytes:
        """Put ``payload`` in the log; return the state machine's reply once applied here.

        Raises :class:`Unavailable` if it was never proposed (no leader within the
        timeout), :class:`UnknownOutcome` if it was proposed but not seen applied in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            future = self.submit_future(payload, max(0.0, deadline - loop.time()))
            if future is not None:
                return await future
            if loop.time() >= deadline:
                raise Unavailable("no leader is known")
            await self._wait_for_leader(deadline - loop.time())
            self._check_alive()

    def read_future(self, timeout: float = 5.0) -> asyncio.Future[bool]:
        """Ask for a read index; the future becomes True once this node may serve a read.

        False means no leader confirmed it (none known, or leadership lost): retry.
        """
        self._check_alive()
        loop = self._loop or asyncio.get_running_loop()
        token = next(self._read_tokens)
        future: asyncio.Future[bool] = loop.create_future()
        self._read_waiters[token] = future
        heapq.heappush(self._deadlines, (loop.time() + timeout, token, True))
        self.replica.read_index(token)
        self._wake.set()
        return future

    async def read(self, fn: Callable[[Any], T], timeout: float = 5.0) -> T:
        """Run ``fn(state_machine)`` once this node reflects every write before the call.

        The leader confirms with a quorum that it still leads (read index), and the read
        waits until this node has applied through that point: linearizable.
        """
        self._check_alive()
        if self.test_bug == "stale-reads":
            return fn(self.sm)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                ok = await self.read_future(max(0.0, deadline - loop.time()))
            except UnknownOutcome:
                raise Unavailable(f"no read index within {timeout:.1f}s") from None
            if ok:
                self.metrics.reads.inc()
                return fn(self.sm)
            if loop.time() >= deadline:
                raise Unavailable("no leader confirmed the read")
            await self._wait_for_leader(deadline - loop.time())
            self._check_alive()

    def _expire(self, now: float) -> None:
        """Fail the commands and reads whose time ran out (checked every tick)."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, key, is_read = heapq.heappop(heap)
            if is_read:
                read = self._read_waiters.pop(key, None)
                if read is not None and not read.done():
                    read.set_exception(UnknownOutcome("no read index in time"))
            else:
                write = self._waiters.pop(key, None)
                if write is not None and not write.done():
                    write.set_exception(UnknownOutcome("not applied in time"))

    async def wait_for_change(self, timeout: float) -> None:
        """Return after the next batch this node carries out, or after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.0, timeout))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking after every batch and tick."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not reached in time")
            await self.wait_for_change(remaining)

    def _signal_change(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def status(self) -> dict[str, Any]:
        """What ``/status`` and ``INFO`` report."""
        r = self.replica
        peers = {}
        now = time.monotonic()
        for pid, st in self.transport.peer_status().items():
            last = st.last_received_monotonic
            peers[str(pid)] = {
                "address": "{}:{}".format(*self.config.members[pid]),
                "connected": st.connected,
                "inbound_connected": st.inbound_connected,
                "last_contact_seconds": None if last is None else round(now - last, 3),
            }
        return {
            "node_id": self.id,
            "role": r.role.value,
            "leader_id": r.leader,
            "ballot": str(r.ballot if r.role is Role.LEADER else r.promised),
            "commit_index": r.commit_index,
            "applied_index": self.applied,
            "snapshot_index": r.snapshot_slot,
            "failed": self.failed,
            "peers": peers,
        }

    # ------------------------------------------------------------------ internals

    def _check_alive(self) -> None:
        if self.failed is not None:
            raise NodeFailed(self.failed)
        if self._closed:
            raise Unavailable("node stopped")

    async def _wait_for_leader(self, remaining: float) -> None:
        """Sleep until a leader change or a heartbeat period, whichever is first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_changes.append(future)
        wait = min(self.config.tick_seconds * self.config.heartbeat_ticks, remaining)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, max(0.0, wait))

    def _tick(self) -> None:
        if self._closed or self.failed:
            return
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.config.tick_seconds, self._tick)
        leader = self.replica.leader
        self.replica.tick()
        self._note_leader(leader)
        if self._deadlines:
            self._expire(loop.time())
        self._wake.set()
        self._signal_change()

    def _on_message(self, message: Message) -> None:
        if self._closed or self.failed:
            return
        if isinstance(message, SnapshotChunk | SnapshotChunkAck):
            self.snapshots.on_message(message)
            return
        leader = self.replica.leader
        self.replica.step(message)
        self._note_leader(leader)
        self._wake.set()

    def _note_leader(self, before: int | None) -> None:
        if self.replica.leader != before:
            self.metrics.leader_changes.inc()
            if before is not None:
                self._abandon_in_flight(before)
            if self.replica.role is Role.LEADER:
                self.metrics.elections_won.inc()
                self.log.info("node %d leads with ballot %s", self.id, self.replica.ballot)
            else:
                self.log.info("leader is now %s (was %s)", self.replica.leader, before)
            waiters, self._leader_changes = self._leader_changes, []
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def _abandon_in_flight(self, old_leader: int) -> None:
        """The leader changed: commands it was handling may or may not be chosen.

        Waiting for them until the timeout would stall clients for seconds; tell them at
        once that the outcome is unknown, so they retry with the same request id (which the
        replicated session table answers without applying twice).
        """
        exc = UnknownOutcome(f"leader {old_leader} lost while the command was in flight")
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(exc)

    def send(self, dst: int, message: Message) -> None:
        """Hand ``message`` to the transport (drops are the protocol's business)."""
        self.transport.send(dst, message)

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.replica.has_ready() and self._writes_in_flight < MAX_WRITES_IN_FLIGHT:
                    ready = self.replica.ready()
                    if ready.snapshot_install is not None:
                        # Decoded in a worker thread; what the batch commits after the
                        # snapshot is applied once it is swapped in.
                        await self._install_snapshot(ready.snapshot_install.last_slot)
                    self._carry_out(ready, loop)
                    # Release the batch now; our own votes in it count once its write is
                    # durable (_written). The next batch can go out meanwhile: pipelining.
                    self.replica.advance(ready, persisted=False)
                    self._maybe_snapshot()
                    self._signal_change()
        except StorageError as exc:
            self._fatal(f"storage failed: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("driver crashed")
            self._fatal(f"driver crashed: {exc!r}")

    def _carry_out(self, ready: Ready, loop: asyncio.AbstractEventLoop) -> None:
        for dst, message in ready.messages:
            self.transport.send(dst, message)
        if self.test_bug == "ack-before-fsync":
            # Acknowledge now, write 200 ms later (in order): a crash in between forgets
            # promises and acceptances that already left the node.
            for dst, message in ready.persisted_messages:
                self.transport.send(dst, message)
            ready.persisted_messages = []
            persist, ready.persist = ready.persist, Persist()
            persist.snapshot = None
            loop.call_later(0.2, self._io.submit, self.storage.write, persist)
        persist = ready.persist
        if persist.snapshot is not None:
            # The snapshot's bytes are already durable (streamed in by SnapshotTransfers).
            persist.snapshot = None
        if not persist.must_sync and persist.entries == [] and persist.promised is None:
            # Only the lazily written commit index (or a compaction): fold it into the
            # next synced batch rather than paying a commit of its own.
            if persist.compact_through is None:
                if persist.commit_index is not None:
                    self._deferred_commit = persist.commit_index
                persist.commit_index = None
        elif persist.commit_index is None and self._deferred_commit is not None:
            persist.commit_index = self._deferred_commit
        if persist.commit_index is not None:
            self._deferred_commit = None
        depends = bool(ready.persisted_messages or ready.self_accepts) or (
            ready.self_promise is not None
        )
        if not persist.empty() or persist.must_sync or (depends and self._writes_in_flight):
            # Group commit: one write (one transaction, one sync) at a time on the I/O
            # thread; batches taken while it runs are merged into the next one. Batches
            # become durable in the order they were taken, as the core requires. A batch
            # with nothing to write whose messages may rest on an earlier write (an
            # Accepted for a slot the previous batch wrote) waits its turn too.
            self._writes_in_flight += 1
            self._write_queue.append(ready)
            if not self._writing:
                self._start_write(loop)
        else:
            self._written(ready)
        if ready.committed:
            self._apply(ready.committed)
        for token, index in ready.reads:
            if token in self._read_waiters:
                heapq.heappush(self._read_ready, (index, token))
        for token in ready.failed_reads:
            failed = self._read_waiters.pop(token, None)
            if failed is not None and not failed.done():
                failed.set_result(False)
        self._serve_reads()
        for peer in ready.snapshots_to_send:
            self.snapshots.send_to(peer)

    def _start_write(self, loop: asyncio.AbstractEventLoop) -> None:
        readies, self._write_queue = self._write_queue, []
        merged = _merge([r.persist for r in readies])
        self._writing = True
        job: Callable[[], None] = (
            functools.partial(self.storage.write, merged)
            if not merged.empty() or merged.must_sync
            else _barrier
        )
        future = asyncio.wrap_future(self._io.submit(job), loop=loop)
        future.add_done_callback(
            functools.partial(self._write_done, readies, merged, time.perf_counter())
        )

    def _write_done(
        self, readies: list[Ready], merged: Persist, started: float, future: asyncio.Future[None]
    ) -> None:
        self._writing = False
        self._writes_in_flight -= len(readies)
        if future.cancelled() or self._closed:
            return
        exc = future.exception()
        if exc is not None:
            self._fatal(f"storage failed: {exc}")
            return
        if merged.must_sync:
            self.metrics.fsync_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_entries.observe(len(merged.entries))
        for ready in readies:
            self._written(ready)
        if self._write_queue and self.failed is None:
            self._start_write(self._loop or asyncio.get_running_loop())

    def _written(self, ready: Ready) -> None:
        """``ready``'s write is durable: send what depended on it, count our own votes."""
        if self.failed is not None:
            return
        for dst, message in ready.persisted_messages:
            self.transport.send(dst, message)
        leader = self.replica.leader
        self.replica.persisted(ready)  # may finish phase 1 or choose slots
        self._note_leader(leader)
        self._wake.set()

    def _apply(self, committed: list[tuple[int, tuple[bytes, ...]]]) -> None:
        sm = self.sm
        waiters = self._waiters
        me, incarnation = self.id, self._incarnation
        count = 0
        for slot, value in committed:
            for command in value:
                origin, inc, seq, payload = envelope.unpack(command)
                reply = sm.apply(payload)
                count += 1
                if origin == me and inc == incarnation:
                    future = waiters.pop(seq, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
            self.applied = slot
        self.metrics.commands_applied.inc(count)
        self.metrics.slots_applied.inc(len(committed))

    def _serve_reads(self) -> None:
        heap = self._read_ready
        while heap and heap[0][0] <= self.applied:
            _, token = heapq.heappop(heap)
            waiter = self._read_waiters.pop(token, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

    async def _install_snapshot(self, last_slot: int) -> None:
        """Replace the state machine with the durable snapshot through ``last_slot``.

        Reading and decoding run on the snapshot thread (the event loop keeps answering
        heartbeats); only the final swap runs here.
        """
        loop = asyncio.get_running_loop()
        sm, storage = self.sm, self.storage

        def prepare() -> Callable[[], None]:
            data = storage.read_snapshot()
            if isinstance(sm, ConcurrentSnapshots):
                return sm.prepare_restore(data)
            return functools.partial(sm.restore, data)

        started = time.perf_counter()
        swap = await loop.run_in_executor(self._snap_io, prepare)
        swap()
        self.applied = last_slot
        self._last_snapshot = max(self._last_snapshot, last_slot)
        self.log.info(
            "installed snapshot through slot %d in %.3fs", last_slot, time.perf_counter() - started
        )

    def _maybe_snapshot(self) -> None:
        """Start saving a snapshot in the background once enough slots were applied."""
        if self._snapshot_task is not None or self.failed is not None:
            return
        if self.applied - self._last_snapshot < self.config.snapshot_every:
            return
        sm = self.sm
        # The capture happens here, between two applied batches; the encoding, the write
        # and the fsync happen on the snapshot thread while the node keeps committing.
        data: bytes | Iterator[bytes] = (
            sm.snapshot_stream() if isinstance(sm, ConcurrentSnapshots) else sm.snapshot()
        )
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._save_snapshot(self.applied, data), name=f"pyxos-snapshot-{self.id}"
        )

    async def _save_snapshot(self, last: int, data: bytes | Iterator[bytes]) -> None:
        loop = asyncio.get_running_loop()
        members = tuple(sorted(self.config.members))
        started = time.perf_counter()
        try:
            info = await loop.run_in_executor(
                self._snap_io, self.storage.save_snapshot, last, members, data
            )
        except StaleSnapshotError:
            return  # a newer snapshot was installed from the leader meanwhile
        except StorageError as exc:
            self._fatal(f"storage failed while saving a snapshot: {exc}")
            return
        finally:
            self._snapshot_task = None
        if self._closed or self.failed is not None:
            return
        self._last_snapshot = max(self._last_snapshot, last)
        self.replica.compact(last)
        self.metrics.snapshots.inc()
        self._wake.set()
        self.log.info(
            "snapshot through slot %d (%d bytes) in %.3fs, log compacted",
            last,
            info.size,
            time.perf_counter() - started,
        )

    def _fatal(self, reason: str) -> None:
        """Stop voting and serving: never continue on state we could not persist."""
        if self.failed is not None:
            return
        self.failed = reason
        self.log.critical("node %d stops: %s", self.id, reason)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._fail_waiters(NodeFailed(reason))
        asyncio.get_running_loop().create_task(self.transport.close())
        if self._on_fatal is not None:
            self._on_fatal(reason)

    def _fail_waiters(self, exc: Exception) -> None:
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(exc)
        self._waiters.clear()
        for read_future in self._read_waiters.values():
            if not read_future.done():
                read_future.set_exception(exc)
        self._read_waiters.clear()

    def install_received_snapshot(self, src: int, last_slot: int, members: tuple[int, ...]) -> None:
        """A streamed snapshot is durable: let the core jump to it."""
        self.replica.step(InstallSnapshot(src, last_slot, members, b""))
        self._wake.set()
