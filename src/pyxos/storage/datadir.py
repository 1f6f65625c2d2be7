"""The data dir of a node's storage: its layout, lock, identity, engine hooks and failures.

This is the part of :class:`~pyxos.storage.base.Storage` that every operation stands on:
opening (lock the dir, check the engine and the identity, read the meta records, clean
leftover snapshot files), the handful of methods an engine supplies, syncing, and closing.
What is done with it lives above: snapshot files in :mod:`pyxos.storage.snapshot_store`,
writing a batch and loading after a restart in :mod:`pyxos.storage.base`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pyxos.storage import incoming
from pyxos.storage import snapshots as files
from pyxos.storage.errors import (
    CorruptStorageError,
    FailureLatch,
    IdentityMismatchError,
    StorageError,
)
from pyxos.storage.interface import ClosesOnExit
from pyxos.storage.records import (
    FORMAT_VERSION,
    IDENTITY_DECODER,
    REGISTRY_DECODER,
    SNAPSHOT_DECODER,
    Identity,
    SnapshotInfo,
    SnapshotRecord,
    engine_of,
    normalize_members,
    unseal,
)

__all__ = [
    "K_COMMIT",
    "K_IDENTITY",
    "K_MEMBERSHIP",
    "K_PROMISED",
    "K_REGISTRY",
    "K_SNAPSHOT",
    "K_STANDING",
    "LOCK_FILE",
    "SNAPSHOT_DIR",
    "DataDir",
    "Transaction",
    "move_aside",
]

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"
SNAPSHOT_DIR = "snapshots"

K_IDENTITY = b"identity"
K_PROMISED = b"promised"
K_COMMIT = b"commit_index"
K_SNAPSHOT = b"snapshot"
K_STANDING = b"standing"
K_REGISTRY = b"registry"
K_MEMBERSHIP = b"membership"
"""The core's membership history, as the core encoded it (the payload is those bytes)."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """What one engine transaction writes, in this order: the sealed meta records, the
    sealed log rows, then the deletion of the log through ``delete_through`` (0: none)."""

    what: str
    """What the node was doing, for the failure report (``"writing a batch"``)."""
    meta: Sequence[tuple[bytes, bytes]] = ()
    rows: Sequence[tuple[int, bytes]] = ()
    delete_through: int = 0


class DataDir(ClosesOnExit):
    """An open data dir: the lock held, the identity checked, the engine open.

    Thread-safe through one lock (``_lock``); any I/O error is fatal and sticky through
    ``_latch`` (see :mod:`pyxos.storage.errors`). The arguments are
    :class:`~pyxos.storage.base.Storage`'s.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        node_id: int,
        cluster_id: str,
        members: Sequence[int] | None = None,
        create: bool = True,
        sync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.sync_commits = sync
        """False only for the ``skip-fsync`` test bug: commits are never fsynced."""
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.created = False
        """Whether this open created the data dir (a brand-new node)."""
        self.syncs = 0
        """How many ``env.sync`` calls succeeded: at most one per write call."""
        self.last_sync_seconds = 0.0
        self.sync_seconds_total = 0.0
        self._latch = FailureLatch()
        self._lock = threading.RLock()
        self._dirty = False
        """A transaction was committed since the last sync."""
        self._pending_unlinks: list[Path] = []
        self._snapshot: SnapshotInfo | None = None
        self._incoming: incoming.FileIncomingSnapshot | None = None
        self._lock_fd: int | None = None
        self._meta_records: dict[bytes, bytes] = {}
        self._registry: dict[int, int] = {}
        """Peers' incarnations recorded here (updated, rewritten whole: it is tiny)."""
        self.incarnation = 0
        """This data dir's random identity (``Identity.incarnation``)."""
        wanted = normalize_members(members) if members is not None else None
        if wanted is not None and node_id not in wanted:
            raise ValueError(f"node {node_id} is not among the members {wanted}")
        try:
            self._open(wanted, create)
        except BaseException as exc:
            self._release()
            if isinstance(exc, self.CORRUPT_ERRORS):
                raise CorruptStorageError(f"data dir {self.path} is damaged: {exc}") from exc
            if isinstance(exc, ValueError) and not isinstance(exc, StorageError):
                # msgspec decode errors of our own records
                raise CorruptStorageError(f"data dir {self.path} is damaged: {exc}") from exc
            if isinstance(exc, (*self.ENGINE_ERRORS, OSError)):
                raise StorageError(f"cannot open data dir {self.path}: {exc}") from exc
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        """Open (or create) the data dir at ``path``; the same as the constructor."""
        return cls(path, **kwargs)

    # ------------------------------------------------------------------ opening

    @property
    def snapshot_dir(self) -> Path:
        """Where snapshot files live."""
        return self.path / SNAPSHOT_DIR

    def _open(self, members: tuple[int, ...] | None, create: bool) -> None:
        is_new = not self.path.exists()
        if is_new and not create:
            raise CorruptStorageError(f"data dir {self.path} is missing (and create=False)")
        self.path.mkdir(parents=True, exist_ok=True)
        if is_new:
            files.fsync_dir(self.path.parent)
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StorageError(f"data dir {self.path} is already open elsewhere") from exc
        self.snapshot_dir.mkdir(exist_ok=True)
        found = engine_of(self.path)
        if found is not None and found != self.ENGINE:
            raise StorageError(
                f"data dir {self.path} holds a {found} store, not {self.ENGINE}: "
                f"open it with storage = {found!r}"
            )
        if found is None:
            orphans = [p.name for p in self.snapshot_dir.iterdir() if p.name.startswith("snap-")]
            if orphans:
                raise CorruptStorageError(
                    f"data dir {self.path} has snapshot files {orphans} but no {self.ENGINE} "
                    "store: its meta is missing"
                )
            if not create:
                raise CorruptStorageError(
                    f"data dir {self.path} has no {self.ENGINE} store (and create=False)"
                )
            incarnation = secrets.randbits(62) + 1
            self._engine_create(
                Identity(FORMAT_VERSION, self.cluster_id, self.node_id, members or (), incarnation)
            )
            self.created = True
        self._engine_open()
        self._meta_records = self._engine_meta()
        raw_identity = self._record(K_IDENTITY)
        if raw_identity is None:
            raise CorruptStorageError(f"{self.data_file}: identity record is missing")
        identity = IDENTITY_DECODER.decode(raw_identity)
        self._check_identity(identity)
        self.incarnation = identity.incarnation
        raw_snapshot = self._record(K_SNAPSHOT)
        if raw_snapshot is not None:
            self._snapshot = self._info(SNAPSHOT_DECODER.decode(raw_snapshot))
            files.verify_file(self._snapshot, checksum=False)
        raw_registry = self._record(K_REGISTRY)
        self._registry = REGISTRY_DECODER.decode(raw_registry) if raw_registry else {}
        if members is not None:
            recorded = self._snapshot.members if self._snapshot else identity.members
            if recorded and recorded != members:
                raise IdentityMismatchError(
                    f"data dir {self.path} records members {recorded}, not {members}"
                )
        keep = self._snapshot.path.name if self._snapshot and self._snapshot.path else None
        removed = incoming.clean_directory(self.snapshot_dir, keep, self.snapshot_slot)
        if removed:
            log.info("removed leftover snapshot files %s from %s", removed, self.snapshot_dir)

    def _record(self, key: bytes) -> bytes | None:
        """The checked payload of meta record ``key`` as read at open, or ``None``."""
        raw = self._meta_records.get(key)
        return None if raw is None else unseal(key, raw, str(self.data_file))

    def _check_identity(self, identity: Identity) -> None:
        if identity.format != FORMAT_VERSION:
            raise StorageError(
                f"data dir {self.path} has format {identity.format}; "
                f"this version reads format {FORMAT_VERSION}"
            )
        if identity.cluster_id != self.cluster_id or identity.node_id != self.node_id:
            raise IdentityMismatchError(
                f"data dir {self.path} belongs to node {identity.node_id} of cluster "
                f"{identity.cluster_id!r}, not to node {self.node_id} of cluster "
                f"{self.cluster_id!r}"
            )

    # ------------------------------------------------------------------ the engine
    # Each engine (LmdbStorage, SqliteStorage) supplies these; everything else (the data
    # dir, its lock, snapshot files, the rules of a batch, failures) is here, once.

    ENGINE = ""
    CORRUPT_ERRORS: tuple[type[BaseException], ...] = ()
    """Engine errors that mean the store is damaged (rejoin as a learner)."""
    ENGINE_ERRORS: tuple[type[BaseException], ...] = ()
    """Engine errors that mean the disk or the process failed (fatal, sticky)."""

    @property
    def data_file(self) -> Path:
        """The file that holds the records (named in every damage report)."""
        raise NotImplementedError

    def _engine_create(self, identity: Identity) -> None:
        """Create the store with its identity record, so that a data dir either has a
        complete, synced identity or no store at all."""
        raise NotImplementedError

    def _engine_open(self) -> None:
        """Open the store (its records are read by :meth:`_engine_meta`)."""
        raise NotImplementedError

    def _engine_meta(self) -> dict[bytes, bytes]:
        """Every sealed meta record by key (a handful: identity, promise, ...)."""
        raise NotImplementedError

    def _engine_commit(self, txn: Transaction) -> None:
        """Commit ``txn`` durably, as one transaction (a failure is fatal and sticky)."""
        raise NotImplementedError

    def _engine_log(self, floor: int) -> list[tuple[int, bytes]]:
        """The sealed log records above ``floor``, in slot order."""
        raise NotImplementedError

    def _engine_close(self) -> None:
        raise NotImplementedError

    def _engine_is_open(self) -> bool:
        raise NotImplementedError

    def _info(self, record: SnapshotRecord) -> SnapshotInfo:
        return SnapshotInfo(
            record.last_slot,
            record.members,
            record.size,
            record.checksum,
            self.snapshot_dir / record.filename,
            record.ballot,
            record.membership,
        )

    # ------------------------------------------------------------------ state

    @property
    def failed(self) -> bool:
        """Whether a fatal error happened; every call now raises :class:`StorageError`."""
        return self._latch.failed

    @property
    def snapshot(self) -> SnapshotInfo | None:
        """The current snapshot, if any."""
        return self._snapshot

    @property
    def snapshot_slot(self) -> int:
        """Slots up to here are in the snapshot and compacted from the log."""
        return self._snapshot.last_slot if self._snapshot is not None else 0

    def _check_open(self) -> None:
        self._latch.check()
        assert self._engine_is_open()

    def _sync_env(self) -> None:
        """Make the batch durable; a method so tests can inject failures.

        The engines' commits are durable when they return (LMDB in safe mode, SQLite with
        ``synchronous=FULL``), so there is nothing left to do here.
        """

    def _sync(self) -> None:
        """Sync, count it, then delete files that the now durable state no longer needs."""
        self._latch.check()
        start = time.perf_counter()
        failures: tuple[type[BaseException], ...] = (*self.ENGINE_ERRORS, OSError)
        try:
            self._sync_env()
        except failures as exc:
            raise self._latch.fail(f"fsync of the {self.ENGINE} store", exc) from exc
        elapsed = time.perf_counter() - start
        self.syncs += 1
        self.last_sync_seconds = elapsed
        self.sync_seconds_total += elapsed
        self._dirty = False
        pending, self._pending_unlinks = self._pending_unlinks, []
        for path in pending:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                # Not a durability problem: the file is unreferenced and goes at next open.
                log.warning("could not delete old snapshot %s: %s", path, exc)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Sync what was committed since the last sync (unless failed), then release all.

        Idempotent. The final sync makes a clean shutdown lose nothing, not even the
        lazily written commit index.
        """
        with self._lock:
            if self._latch.closed:
                return
            try:
                if self._dirty and not self._latch.failed and self._engine_is_open():
                    self._sync()
            finally:
                self._release()
                self._latch.closed = True

    def _release(self) -> None:
        if self._incoming is not None:
            self._incoming.close()
            self._incoming = None
        self._engine_close()
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # also drops the flock


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a damaged data dir out of the way, keeping it for a post-mortem.

    The runtime calls this after a :class:`CorruptStorageError`, then opens a fresh data
    dir and rejoins as a learner. Returns the new name.
    """
    source = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = source.with_name(f"{source.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = source.with_name(f"{source.name}.corrupt-{stamp}-{n}")
    os.rename(source, target)
    files.fsync_dir(source.parent)
    return target
