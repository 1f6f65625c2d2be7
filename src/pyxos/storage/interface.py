"""The storage interface the runtime programs against.

Both :class:`~pyxos.storage.lmdb_store.Storage` and
:class:`~pyxos.storage.memory.MemoryStorage` satisfy these protocols, so runtime tests can
swap the disk for a model that can lose unsynced writes on demand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

from pyxos.core.ballot import Ballot
from pyxos.core.ready import HardState, Persist
from pyxos.storage.records import SnapshotInfo


class ClosesOnExit:
    """``with thing:`` closes it on the way out: the context-manager half that every store,
    snapshot reader and model of them shares."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SnapshotReaderBase(ClosesOnExit):
    """What both snapshot readers (the file one and the in-memory model) share."""

    __slots__ = ()
    info: SnapshotInfo

    @property
    def size(self) -> int:
        """Total bytes of the snapshot."""
        return self.info.size

    def _check_read(self, offset: int, n: int, *, closed: bool) -> None:
        """Refuse a read after ``close``, one that starts outside the snapshot, or one that
        asks for a negative length."""
        if closed:
            raise ValueError("snapshot reader is closed")
        if not 0 <= offset <= self.info.size or n < 0:
            raise ValueError(f"bad read({offset}, {n}) of a {self.info.size}-byte snapshot")


class SnapshotReader(Protocol):
    """Random-access reads of one snapshot, for chunked and resumable sending."""

    @property
    def info(self) -> SnapshotInfo:
        """What the snapshot covers, its size and checksum (send these first)."""
        ...

    @property
    def size(self) -> int:
        """Total bytes."""
        ...

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset``; fewer only at the end."""
        ...

    def close(self) -> None:
        """Release the snapshot."""
        ...


class IncomingSnapshot(Protocol):
    """Receives one snapshot in chunks; idempotent and resumable."""

    @property
    def next_offset(self) -> int:
        """The first byte not yet received: where the sender should continue."""
        ...

    @property
    def size(self) -> int:
        """Total bytes expected."""
        ...

    @property
    def last_slot(self) -> int:
        """The last slot the snapshot being received covers."""
        ...

    def write_chunk(self, offset: int, data: bytes) -> int:
        """Store a chunk received for ``offset``; return the next offset expected."""
        ...

    def finish(self) -> SnapshotInfo:
        """Verify, install as the current snapshot and compact the log, durably."""
        ...

    def close(self) -> None:
        """Stop, keeping the partial data for a resumed transfer."""
        ...

    def abort(self) -> None:
        """Stop and discard the partial data."""
        ...


class StorageBackend(Protocol):
    """A node's stable storage: acceptor state, chosen log and snapshots."""

    syncs: int
    last_sync_seconds: float

    @property
    def failed(self) -> bool:
        """Whether a fatal error happened (every later call raises)."""
        ...

    @property
    def snapshot(self) -> SnapshotInfo | None:
        """The current snapshot, if any."""
        ...

    @property
    def snapshot_slot(self) -> int:
        """Slots up to here are in the snapshot and gone from the log."""
        ...

    def write(self, persist: Persist) -> None:
        """Write a batch in one transaction; sync once if ``persist.must_sync``."""
        ...

    def load(self, *, verify_snapshot: bool = True) -> tuple[HardState, SnapshotInfo | None]:
        """The state a replica restarts from, and the current snapshot."""
        ...

    def save_snapshot(
        self,
        last_slot: int,
        members: Sequence[int],
        data: bytes | Iterable[bytes],
        ballot: Ballot = ...,
        membership: bytes = b"",
    ) -> SnapshotInfo:
        """Durably save a snapshot through ``last_slot`` and compact the log below it,
        with its promise floor ``ballot`` and the membership history it was taken with."""
        ...

    def open_snapshot(self) -> SnapshotReader | None:
        """A reader of the current snapshot, or ``None``."""
        ...

    def read_snapshot(self) -> bytes:
        """The whole current snapshot, checked, for ``StateMachine.restore``."""
        ...

    def begin_incoming(
        self,
        last_slot: int,
        members: Sequence[int],
        size: int,
        checksum: int | None = None,
        ballot: Ballot = ...,
        membership: bytes = b"",
    ) -> IncomingSnapshot:
        """Start (or resume) receiving a snapshot in chunks."""
        ...

    def close(self) -> None:
        """Release the storage."""
        ...
