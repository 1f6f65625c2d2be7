"""What can go wrong with stable storage, sorted by what the runtime should do about it.

- :class:`StorageError` and its subclasses are fatal for the process: a node must never
  keep running on state it could not persist, or acknowledge a promise that might not be on
  disk. After one is raised the storage object stays failed and every later call raises
  too (after a failed ``fsync`` Linux may drop the dirty pages and report the next
  ``fsync`` as a success, the "fsyncgate" problem, so retrying is not safe).
- :class:`CorruptStorageError` says the data dir is damaged or incomplete: the node must
  not vote on what is left, and should move the dir aside and rejoin as a learner.
- :class:`IdentityMismatchError` says the data dir belongs to another node or cluster: an
  operator mistake, so refuse to start rather than guess.
- :class:`StaleSnapshotError` and :class:`SnapshotVerifyError` are ``ValueError`` s about
  one snapshot (older than ours, or damaged in transit). Nothing durable changed, and the
  storage stays usable.
"""

from __future__ import annotations

import threading


class StorageError(Exception):
    """Stable storage failed; the node must stop using it (the cause is chained)."""


class CorruptStorageError(StorageError):
    """The data dir is missing, damaged or inconsistent: rejoin as a learner.

    The node may have promised or accepted things it no longer remembers, so it must not
    vote (nor lead) until it has caught up from the others.
    """


class IdentityMismatchError(StorageError):
    """The data dir belongs to another node or cluster, or to another membership."""


class StaleSnapshotError(ValueError):
    """A snapshot that is not newer than the current one; nothing was changed."""


def check_newer(last_slot: int, current: int) -> None:
    """Refuse a snapshot through ``last_slot`` unless it is newer than the one through
    ``current``: every way a snapshot arrives (saved, installed, received) obeys this."""
    if last_slot <= current:
        raise StaleSnapshotError(
            f"snapshot through {last_slot} is not newer than the current one through {current}"
        )


class SnapshotVerifyError(ValueError):
    """An incoming snapshot failed its size or checksum check and was discarded.

    The transfer was damaged, not our disk: fetch the snapshot again.
    """


class FailureLatch:
    """Remembers the first fatal error so that every later call fails the same way.

    Shared by a storage object and the snapshot readers and writers it hands out, so that
    an I/O error anywhere fails all of them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: StorageError | None = None
        self.closed = False

    @property
    def failed(self) -> bool:
        """Whether a fatal error happened."""
        return self.error is not None

    def check(self) -> None:
        """Raise if storage failed earlier or was closed."""
        error = self.error
        if error is not None:
            raise StorageError(f"storage failed earlier and cannot be used: {error}") from error
        if self.closed:
            raise StorageError("storage is closed")

    def fail(
        self, what: str, cause: BaseException, kind: type[StorageError] = StorageError
    ) -> StorageError:
        """Record ``cause`` as fatal (the first one wins) and return the error to raise."""
        error = kind(f"{what}: {cause}" if str(cause) else f"{what}: {cause!r}")
        error.__cause__ = cause
        with self._lock:
            if self.error is None:
                self.error = error
        return error
