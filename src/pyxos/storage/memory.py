"""In-memory storage with a model of what a power loss keeps.

It has :class:`~pyxos.storage.lmdb_store.Storage`'s interface and semantics (the same
compaction, snapshot and validation rules), and also remembers which writes were synced:

- a write with ``must_sync`` makes itself and every earlier write durable, as
  ``env.sync`` does for all committed transactions;
- a write without it stays *unsynced*; :meth:`MemoryStorage.crash` keeps a random subset
  of the unsynced writes (each one whole or not at all, since a transaction is atomic)
  and drops the rest, then "restarts" the node from what was kept;
- saving or installing a snapshot syncs, as the real one does.

Keeping an arbitrary subset is harsher than LMDB, which can only lose a suffix of the
unsynced transactions; ``crash(rng, prefix=True)`` models exactly that instead. With
the core's batches both are safe: everything a message depends on is synced.

Use :meth:`MemoryStorage.inject_sync_failure` to test the runtime's reaction to a failed
fsync.
"""

from __future__ import annotations

import dataclasses
import errno
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import InstallSnapshot
from pyxos.core.ready import HardState, Persist
from pyxos.storage.batch import DurableImage, WritePlan, plan_write
from pyxos.storage.errors import (
    CorruptStorageError,
    FailureLatch,
    SnapshotVerifyError,
    check_newer,
)
from pyxos.storage.interface import ClosesOnExit, SnapshotReaderBase
from pyxos.storage.records import IncomingRecord, SnapshotInfo, normalize_members
from pyxos.storage.snapshots import chunk_skip, iter_chunks


@dataclass(frozen=True, slots=True)
class _Snapshot:
    info: SnapshotInfo
    data: bytes


def _info(snapshot: InstallSnapshot) -> SnapshotInfo:
    data = snapshot.data
    return SnapshotInfo(
        snapshot.last_slot,
        snapshot.members,
        len(data),
        zlib.crc32(data),
        None,
        snapshot.ballot,
        snapshot.membership,
    )


class MemorySnapshotReader(SnapshotReaderBase):
    """Reads an in-memory snapshot; same contract as the file reader."""

    def __init__(self, snapshot: _Snapshot) -> None:
        self.info = snapshot.info
        self._data: bytes | None = snapshot.data

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset``."""
        self._check_read(offset, n, closed=self._data is None)
        assert self._data is not None
        return self._data[offset : offset + n]

    def close(self) -> None:
        """Release the snapshot."""
        self._data = None


@dataclass(slots=True)
class _Partial:
    key: tuple[int, tuple[int, ...], int, int | None]
    ballot: Ballot = ZERO
    membership: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class MemoryIncomingSnapshot:
    """Receives a snapshot into memory; same contract as the file writer."""

    def __init__(self, storage: MemoryStorage, partial: _Partial) -> None:
        self._storage = storage
        self._partial: _Partial | None = partial
        self.last_slot, self.members, self._size, self.checksum = partial.key
        self._ballot = partial.ballot
        self.record = IncomingRecord("", self.last_slot, self.members, self._size, self.checksum)
        """The same description as a file transfer's (the token is unused here)."""

    @property
    def next_offset(self) -> int:
        """The first byte not yet received."""
        return len(self._partial.data) if self._partial is not None else 0

    @property
    def size(self) -> int:
        """Total bytes expected."""
        return self._size

    def _live(self) -> _Partial:
        partial = self._partial
        if partial is None or self._storage._partial is not partial:
            raise ValueError("incoming snapshot writer is closed (finished, aborted or replaced)")
        self._storage._latch.check()
        return partial

    def write_chunk(self, offset: int, data: bytes) -> int:
        """Store a chunk; return the next offset expected."""
        partial = self._live()
        skip = chunk_skip(offset, len(data), len(partial.data), self._size)
        if skip is not None:
            partial.data += data[skip:]
        return len(partial.data)

    def finish(self) -> SnapshotInfo:
        """Verify, install and compact (synced)."""
        partial = self._live()
        if len(partial.data) != self._size:
            raise ValueError(f"incomplete snapshot: {len(partial.data)} of {self._size} bytes")
        data = bytes(partial.data)
        crc = zlib.crc32(data)
        self._storage._partial = None
        self._partial = None
        if self.checksum is not None and crc != self.checksum:
            raise SnapshotVerifyError(
                f"incoming snapshot through slot {self.last_slot} fails its checksum; discarded"
            )
        snapshot = InstallSnapshot(
            0, self.last_slot, self.members, data, self._ballot, partial.membership
        )
        return self._storage._install(snapshot)

    def close(self) -> None:
        """Stop; the partial data stays for a resumed transfer."""
        self._partial = None

    def abort(self) -> None:
        """Stop and discard the partial data."""
        if self._partial is not None and self._storage._partial is self._partial:
            self._storage._partial = None
        self._partial = None


class MemoryStorage(ClosesOnExit):
    """A :class:`~pyxos.storage.interface.StorageBackend` in memory, for runtime tests."""

    def __init__(
        self,
        *,
        node_id: int = 1,
        cluster_id: str = "test",
        members: Sequence[int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.members = normalize_members(members) if members is not None else None
        self.incarnation = random.getrandbits(62) + 1
        self.syncs = 0
        self.last_sync_seconds = 0.0
        self.sync_seconds_total = 0.0
        self.crashes = 0
        self._durable = DurableImage(self.incarnation)
        self._current = DurableImage(self.incarnation)
        self._unsynced: list[WritePlan] = []
        self._latch = FailureLatch()
        self._partial: _Partial | None = None
        self._writer: MemoryIncomingSnapshot | None = None
        self._sync_failure: BaseException | None = None

    # ------------------------------------------------------------------ state

    @property
    def failed(self) -> bool:
        """Whether a fatal error happened (until the next :meth:`crash`)."""
        return self._latch.failed

    @property
    def snapshot(self) -> SnapshotInfo | None:
        """The current snapshot, if any."""
        snap = self._current.snapshot
        return _info(snap) if snap is not None else None

    @property
    def snapshot_slot(self) -> int:
        """Slots up to here are compacted."""
        return self._current.snapshot_slot

    @property
    def unsynced_writes(self) -> int:
        """How many writes a crash could lose now."""
        return len(self._unsynced)

    # ------------------------------------------------------------------ faults

    def inject_sync_failure(self, error: BaseException | None = None) -> None:
        """Make the next sync fail with ``error`` (default ``EIO``), as a disk would."""
        self._sync_failure = error if error is not None else OSError(errno.EIO, "injected EIO")

    def crash(self, rng: random.Random, *, prefix: bool = False) -> None:
        """Lose power: keep a random subset (or prefix) of unsynced writes, drop the rest.

        Afterwards the storage is usable again, holding what survived, as if the node had
        restarted on the same disk (a failed state, open transfers and the closed flag are
        gone with the process).
        """
        if prefix:
            kept = self._unsynced[: rng.randint(0, len(self._unsynced))]
        else:
            kept = [plan for plan in self._unsynced if rng.random() < 0.5]
        for plan in kept:
            self._durable.apply(plan)
        self._unsynced = []
        self._current = self._durable.copy()
        self._partial = None
        self._writer = None
        self._latch = FailureLatch()
        self._sync_failure = None
        self.crashes += 1

    def reopen(self) -> None:
        """Restart cleanly after :meth:`close`: nothing is lost (close syncs)."""
        self._latch = FailureLatch()

    # ------------------------------------------------------------------ writing

    def _sync(self) -> None:
        self._latch.check()
        failure, self._sync_failure = self._sync_failure, None
        if failure is not None:
            # As after a real failed fsync, the unsynced writes may or may not survive.
            raise self._latch.fail("fsync of the storage", failure)
        for plan in self._unsynced:
            self._durable.apply(plan)
        self._unsynced = []
        self.syncs += 1

    def _commit(self, plan: WritePlan) -> None:
        self._current.apply(plan)
        self._unsynced.append(plan)

    def write(self, persist: Persist) -> None:
        """Same contract as :meth:`Storage.write` (the same rules: ``storage.batch``)."""
        self._latch.check()
        for entry in persist.entries:
            if entry.slot < 0:
                raise ValueError(f"slot {entry.slot} out of range")
        snap = persist.snapshot
        if snap is not None:
            members = normalize_members(snap.members)
            snap = InstallSnapshot(
                snap.src, snap.last_slot, members, snap.data, snap.ballot, snap.membership
            )
            persist = dataclasses.replace(persist, snapshot=snap)
        plan = plan_write(persist, self.snapshot_slot)
        if not persist.empty():
            self._commit(plan)
        if persist.must_sync:
            self._sync()

    # ------------------------------------------------------------------ reading

    def load(self, *, verify_snapshot: bool = True) -> tuple[HardState, SnapshotInfo | None]:
        """Same contract as :meth:`Storage.load` (``verify_snapshot`` has nothing to do)."""
        self._latch.check()
        try:
            hard = self._current.recover()
        except CorruptStorageError as exc:
            raise self._latch.fail("loading", exc, CorruptStorageError) from exc
        return hard, self.snapshot

    # ------------------------------------------------------------------ snapshots

    def _install(self, snapshot: InstallSnapshot) -> SnapshotInfo:
        self._latch.check()
        check_newer(snapshot.last_slot, self.snapshot_slot)
        self._commit(plan_write(Persist(snapshot=snapshot), self.snapshot_slot))
        self._sync()
        return _info(snapshot)

    def save_snapshot(
        self,
        last_slot: int,
        members: Sequence[int],
        data: bytes | Iterable[bytes],
        ballot: Ballot = ZERO,
        membership: bytes = b"",
    ) -> SnapshotInfo:
        """Same contract as :meth:`Storage.save_snapshot`."""
        self._latch.check()
        check_newer(last_slot, self.snapshot_slot)
        blob = b"".join(bytes(chunk) for chunk in iter_chunks(data))
        return self._install(
            InstallSnapshot(0, last_slot, normalize_members(members), blob, ballot, membership)
        )

    def open_snapshot(self) -> MemorySnapshotReader | None:
        """Same contract as :meth:`Storage.open_snapshot`."""
        self._latch.check()
        snap = self._current.snapshot
        return MemorySnapshotReader(_Snapshot(_info(snap), snap.data)) if snap is not None else None

    def read_snapshot(self) -> bytes:
        """Same contract as :meth:`Storage.read_snapshot`."""
        self._latch.check()
        snap = self._current.snapshot
        if snap is None:
            raise ValueError("there is no snapshot")
        return snap.data

    def begin_incoming(
        self,
        last_slot: int,
        members: Sequence[int],
        size: int,
        checksum: int | None = None,
        ballot: Ballot = ZERO,
        membership: bytes = b"",
    ) -> MemoryIncomingSnapshot:
        """Same contract as :meth:`Storage.begin_incoming`."""
        self._latch.check()
        if size < 0:
            raise ValueError(f"negative snapshot size {size}")
        check_newer(last_slot, self.snapshot_slot)
        key = (last_slot, normalize_members(members), size, checksum)
        if self._writer is not None:
            self._writer.close()
        if self._partial is None or self._partial.key != key:
            self._partial = _Partial(key, ballot, membership)
        self._writer = MemoryIncomingSnapshot(self, self._partial)
        return self._writer

    def close(self) -> None:
        """Sync (a clean shutdown loses nothing) and refuse further calls until reopened."""
        if self._latch.closed:
            return
        try:
            if self._unsynced and not self._latch.failed:
                self._sync()
        finally:
            self._latch.closed = True


__all__ = ["MemoryIncomingSnapshot", "MemorySnapshotReader", "MemoryStorage"]
