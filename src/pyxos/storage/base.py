"""A node's stable storage in a data dir, whatever engine keeps its records.

Layout of a data dir::

    D/LOCK          flock'ed while open: two processes must never share a node's state
    D/<engine>/     the engine's store: meta records and one log record per slot
    D/snapshots/    snapshot files (see :mod:`pyxos.storage.snapshots`)

The meta records are the identity (cluster id, node id, members, format, incarnation),
``promised``, the commit index, the current snapshot's record, this node's standing
(voter, joining or learner) and the registry of its peers' incarnations. Every record is
sealed with a checksum (:func:`pyxos.storage.records.seal`), checked at load.

:class:`Storage` is everything engine-neutral: the data dir and its lock, snapshot files,
the rules of a batch (:mod:`pyxos.storage.batch`, shared with every model of a disk),
recovery checks and sticky failures. An engine (:class:`~pyxos.storage.lmdb_store.LmdbStorage`,
:class:`~pyxos.storage.sqlite_store.SqliteStorage`) supplies only a handful of methods:
create, open, read the meta and the log, commit one transaction, close.

Group commit: one ``Persist`` (one batch of the core, however many slots it holds) is
one transaction, synced once if it must be. Batches that need no sync (only a lazily
written commit index) are still committed durably; the runtime folds them into the next
synced batch instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.storage import snapshots as files
from pyxos.storage.batch import WritePlan, plan_write
from pyxos.storage.errors import (
    CorruptStorageError,
    FailureLatch,
    IdentityMismatchError,
    StaleSnapshotError,
    StorageError,
)
from pyxos.storage.records import (
    BALLOT_DECODER,
    ENCODER,
    ENTRY_DECODER,
    FORMAT_VERSION,
    IDENTITY_DECODER,
    REGISTRY_DECODER,
    SNAPSHOT_DECODER,
    STANDING_DECODER,
    Identity,
    SnapshotInfo,
    SnapshotRecord,
    StandingRecord,
    decode_u64,
    encode_u64,
    engine_of,
    normalize_members,
    seal,
    slot_key,
    unseal,
)

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"
SNAPSHOT_DIR = "snapshots"

K_IDENTITY = b"identity"
K_PROMISED = b"promised"
K_COMMIT = b"commit_index"
K_SNAPSHOT = b"snapshot"
K_STANDING = b"standing"
K_REGISTRY = b"registry"


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding a long log.

    Loading a million entries creates millions of small container objects, and the
    collector, triggered by every 700 new ones, rescans them all again and again: pausing
    it makes ``load`` about three times faster. Nothing here creates reference cycles.
    (Plain ``bytes`` values are also faster than ``buffers=True`` memoryviews, which cost
    one object each.)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Storage:
    """A node's stable storage in a data dir; see the module docstring for the layout.

    Every method is thread-safe (one lock; the engines' write transactions are serialized),
    and the snapshot bytes are written outside the lock, so producing a large snapshot does
    not stall :meth:`write`. Any I/O error is fatal and sticky: see
    :mod:`pyxos.storage.errors`.

    ``members``, when given, must equal the membership recorded in the data dir (that of
    the current snapshot, or the one given at creation); pass ``None`` to skip the check.
    With ``create=False`` a missing data dir is a :class:`CorruptStorageError` (a node that
    had state and lost it must not come back with a blank one and vote).
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
        self._incoming: files.FileIncomingSnapshot | None = None
        self._lock_fd: int | None = None
        self._meta_records: dict[bytes, bytes] = {}
        self._registry: dict[int, int] = {}
        """Peers' incarnations recorded here (merged, rewritten whole: it is tiny)."""
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
    def open(cls, path: str | os.PathLike[str], **kwargs: Any) -> Storage:
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
        removed = files.clean_directory(self.snapshot_dir, keep, self.snapshot_slot)
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

    def _engine_commit(
        self,
        what: str,
        *,
        meta: Sequence[tuple[bytes, bytes]] = (),
        rows: Sequence[tuple[int, bytes]] = (),
        delete_through: int = 0,
    ) -> None:
        """One durable transaction: the sealed meta records and log rows given, then the
        log through ``delete_through`` deleted."""
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

    # ------------------------------------------------------------------ writing

    def write(self, persist: Persist) -> None:
        """Write one batch of the core's state changes in ONE transaction, then sync once.

        In order: ``promised``; the entries (upserted, except those the snapshot covers);
        the commit index; the snapshot's meta record; deletion of every log record at or
        below ``compact_through`` (and below a newly installed snapshot). Then exactly one
        ``env.sync`` if ``persist.must_sync``, so the driver may send the messages that
        depend on the batch as soon as this returns.

        A snapshot in ``persist`` that is not newer than the current one is ignored (it
        was installed already, e.g. through :meth:`begin_incoming`); a newer one has its
        bytes written to a file (with its own file and directory fsyncs) first.
        ``compact_through`` beyond the snapshot is a ``ValueError``: the log below it
        would be lost with nothing covering it.
        """
        self._check_open()
        plan_write(persist, self.snapshot_slot)  # a bad compaction raises before any work
        if persist.entries:
            # Checked before anything is written, so a bad slot changes nothing.
            slot_key(min(e.slot for e in persist.entries))
            slot_key(max(e.slot for e in persist.entries))
        if persist.empty():
            if persist.must_sync:
                with self._lock:
                    self._sync()
            return
        snap = persist.snapshot
        staged: tuple[Path, int, int] | None = None
        if snap is not None and snap.last_slot > self.snapshot_slot:
            staged = self._stage(snap.data)  # outside the lock: it may be large
        try:
            with self._lock:
                self._latch.check()
                # Planned again under the lock: a snapshot may have landed meanwhile.
                plan = plan_write(persist, self.snapshot_slot)
                record: SnapshotRecord | None = None
                if staged is not None and plan.snapshot is not None:
                    path, size, crc = staged
                    s = plan.snapshot
                    record = self._place(path, s.last_slot, s.members, size, crc, s.ballot)
                    staged = None
                encode = ENCODER.encode
                self._engine_commit(
                    "writing a batch",
                    meta=self._meta_rows(plan, record),
                    rows=[(e.slot, seal(slot_key(e.slot), encode(e))) for e in plan.entries],
                    delete_through=plan.delete_through,
                )
                if record is not None:
                    self._make_current(record)
                if persist.must_sync:
                    self._sync()
        finally:
            if staged is not None:
                with contextlib.suppress(OSError):
                    staged[0].unlink()

    def _meta_rows(
        self, plan: WritePlan, snapshot: SnapshotRecord | None
    ) -> list[tuple[bytes, bytes]]:
        """The sealed meta records a batch changes."""
        encode = ENCODER.encode
        out: list[tuple[bytes, bytes]] = []
        if plan.promised is not None:
            out.append((K_PROMISED, seal(K_PROMISED, encode(plan.promised))))
        if plan.commit_index is not None:
            out.append((K_COMMIT, seal(K_COMMIT, encode_u64(plan.commit_index))))
        if snapshot is not None:
            out.append((K_SNAPSHOT, seal(K_SNAPSHOT, encode(snapshot))))
        if plan.standing is not None:
            record = StandingRecord(plan.standing[0].value, plan.standing[1])
            out.append((K_STANDING, seal(K_STANDING, encode(record))))
        if plan.registry:
            merged = dict(self._registry)
            for node, incarnation in plan.registry.items():
                merged.setdefault(node, incarnation)
            if merged != self._registry:
                self._registry = merged
                out.append((K_REGISTRY, seal(K_REGISTRY, encode(merged))))
        return out

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

    # ------------------------------------------------------------------ reading

    def load(self, *, verify_snapshot: bool = True) -> tuple[HardState, SnapshotInfo | None]:
        """What a replica needs after a restart, and where the snapshot's bytes are.

        The entries are those above the snapshot, in slot order. With ``verify_snapshot``
        the snapshot file's checksum is checked (a sequential read of the file); its size
        is always checked. Damage of any kind raises :class:`CorruptStorageError`.
        """
        self._check_open()
        damage: tuple[type[BaseException], ...] = (ValueError, *self.CORRUPT_ERRORS)
        failures: tuple[type[BaseException], ...] = (*self.ENGINE_ERRORS, OSError)
        with self._lock:
            self._latch.check()
            snapshot = self._snapshot
            floor = snapshot.last_slot if snapshot is not None else 0
            where = str(self.data_file)
            try:
                with _gc_paused():
                    self._meta_records = self._engine_meta()
                    raw = self._record(K_PROMISED)
                    promised = BALLOT_DECODER.decode(raw) if raw is not None else ZERO
                    raw = self._record(K_COMMIT)
                    commit_index = decode_u64(raw) if raw is not None else 0
                    raw = self._record(K_STANDING)
                    standing = STANDING_DECODER.decode(raw) if raw is not None else None
                    decode = ENTRY_DECODER.decode
                    entries: list[SlotValue] = [
                        decode(unseal(slot_key(slot), v, where))
                        for slot, v in self._engine_log(floor)
                    ]
                previous = floor
                for entry in entries:
                    if entry.slot <= previous:
                        raise ValueError(f"log out of order at slot {entry.slot}")
                    previous = entry.slot
                covered = commit_index - floor
                if covered > 0 and (
                    len(entries) < covered or entries[covered - 1].slot != commit_index
                ):
                    raise ValueError(f"commit index {commit_index} covers missing log slots")
                if snapshot is not None:
                    files.verify_file(snapshot, checksum=verify_snapshot)
            except CorruptStorageError as exc:
                raise self._latch.fail("loading", exc, CorruptStorageError) from exc
            except damage as exc:
                raise self._latch.fail("loading", exc, CorruptStorageError) from exc
            except failures as exc:
                raise self._latch.fail("loading", exc) from exc
        if snapshot is not None:
            promised = max(promised, snapshot.ballot)
        state = HardState(
            promised=promised,
            entries=entries,
            commit_index=commit_index,
            snapshot_slot=floor,
            members=snapshot.members if snapshot is not None else None,
            standing=Standing(standing.standing) if standing else Standing.JOINING,
            incarnation=self.incarnation,
            registry=dict(self._registry),
            superseded=standing.superseded if standing else None,
        )
        return state, snapshot

    # ------------------------------------------------------------------ snapshots

    def _stage(self, data: bytes | Iterable[bytes]) -> tuple[Path, int, int]:
        """Write snapshot bytes to a fsynced temporary file; ``(path, size, crc32)``."""
        try:
            return files.write_new_file(self.snapshot_dir, files.iter_chunks(data))
        except OSError as exc:
            raise self._latch.fail("writing a snapshot file", exc) from exc

    def _place(
        self,
        staged: Path,
        last_slot: int,
        members: Sequence[int],
        size: int,
        crc: int,
        ballot: Ballot,
    ) -> SnapshotRecord:
        """Rename a finished file to its final unique name and make the rename durable."""
        token = files.new_token()
        name = files.snapshot_filename(last_slot, token)
        try:
            os.rename(staged, self.snapshot_dir / name)
            files.fsync_dir(self.snapshot_dir)
        except OSError as exc:
            raise self._latch.fail("placing a snapshot file", exc) from exc
        return SnapshotRecord(last_slot, normalize_members(members), size, crc, name, ballot)

    def _make_current(self, record: SnapshotRecord) -> SnapshotInfo:
        """Point at the new snapshot; the old file goes once the change is synced."""
        old, self._snapshot = self._snapshot, self._info(record)
        if old is not None and old.path is not None:
            self._pending_unlinks.append(old.path)
        return self._snapshot

    def _install_file(self, path: Path, info: SnapshotInfo) -> SnapshotInfo:
        """Make a finished file the current snapshot: meta and compaction in one
        transaction, one sync, then the old file is deleted.
        """
        self._check_open()
        with self._lock:
            self._latch.check()
            if info.last_slot <= self.snapshot_slot:
                raise StaleSnapshotError(
                    f"snapshot through {info.last_slot} is not newer than the current one "
                    f"through {self.snapshot_slot}"
                )
            record = self._place(
                path, info.last_slot, info.members, info.size, info.checksum, info.ballot
            )
            self._engine_commit(
                "installing a snapshot",
                meta=[(K_SNAPSHOT, seal(K_SNAPSHOT, ENCODER.encode(record)))],
                delete_through=record.last_slot,
            )
            current = self._make_current(record)
            self._sync()
            return current

    def save_snapshot(
        self,
        last_slot: int,
        members: Sequence[int],
        data: bytes | Iterable[bytes],
        ballot: Ballot = ZERO,
    ) -> SnapshotInfo:
        """Save the state machine's snapshot through ``last_slot`` and compact the log.

        ``data`` is the whole snapshot or an iterable of chunks (a generator keeps memory
        bounded by one chunk). ``ballot`` is the node's promise when the state was
        captured: the snapshot's promise floor. Durable when this returns. Raises
        :class:`StaleSnapshotError` unless ``last_slot`` is newer than the current one.
        """
        self._latch.check()
        if last_slot <= self.snapshot_slot:
            raise StaleSnapshotError(
                f"snapshot through {last_slot} is not newer than the current one through "
                f"{self.snapshot_slot}"
            )
        path, size, crc = self._stage(data)
        try:
            info = SnapshotInfo(last_slot, normalize_members(members), size, crc, None, ballot)
            return self._install_file(path, info)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # still there only if the install failed

    def open_snapshot(self) -> files.FileSnapshotReader | None:
        """A reader of the current snapshot (``None`` if there is none); close it after.

        The reader keeps the file open, so it stays readable even after a newer
        snapshot replaces it.
        """
        self._check_open()
        with self._lock:
            self._latch.check()
            info = self._snapshot
            if info is None:
                return None
            assert info.path is not None
            try:
                fd = os.open(info.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise self._latch.fail("opening the snapshot", exc, CorruptStorageError) from exc
            except OSError as exc:
                raise self._latch.fail("opening the snapshot", exc) from exc
            try:
                actual = os.fstat(fd).st_size
            except OSError as exc:
                os.close(fd)
                raise self._latch.fail("opening the snapshot", exc) from exc
            if actual != info.size:
                os.close(fd)
                cause = ValueError(f"{info.path} has {actual} bytes, meta says {info.size}")
                raise self._latch.fail("opening the snapshot", cause, CorruptStorageError)
            return files.FileSnapshotReader(info, fd, self._latch)

    def read_snapshot(self) -> bytes:
        """The whole current snapshot, checked against its checksum, for ``restore``.

        This holds the snapshot in memory once, which ``StateMachine.restore(bytes)``
        needs anyway; to send it, use :meth:`open_snapshot` and read chunks.
        Raises ``ValueError`` if there is no snapshot.
        """
        self._check_open()
        with self._lock:
            self._latch.check()
            info = self._snapshot
            if info is None:
                raise ValueError("there is no snapshot")
            assert info.path is not None
            try:
                data = info.path.read_bytes()
            except FileNotFoundError as exc:
                raise self._latch.fail("reading the snapshot", exc, CorruptStorageError) from exc
            except OSError as exc:
                raise self._latch.fail("reading the snapshot", exc) from exc
        if len(data) != info.size or zlib.crc32(data) != info.checksum:
            cause = ValueError(f"{info.path} does not match its size or checksum")
            raise self._latch.fail("reading the snapshot", cause, CorruptStorageError)
        return data

    def begin_incoming(
        self,
        last_slot: int,
        members: Sequence[int],
        size: int,
        checksum: int | None = None,
        ballot: Ballot = ZERO,
    ) -> files.FileIncomingSnapshot:
        """Start receiving a snapshot in chunks, or resume a transfer of the same one.

        ``checksum`` is the sender's :attr:`SnapshotInfo.checksum`; with it ``finish``
        rejects damaged data. Any writer handed out before is closed (its partial data is
        kept when it is for the same snapshot, so the transfer resumes at
        ``next_offset``). Raises :class:`StaleSnapshotError` unless the snapshot is newer
        than the current one.
        """
        self._check_open()
        if size < 0:
            raise ValueError(f"negative snapshot size {size}")
        if last_slot <= self.snapshot_slot:
            raise StaleSnapshotError(
                f"snapshot through {last_slot} is not newer than the current one through "
                f"{self.snapshot_slot}"
            )
        with self._lock:
            self._latch.check()
            if self._incoming is not None:
                self._incoming.close()
                self._incoming = None
            try:
                writer = files.open_incoming(
                    self.snapshot_dir,
                    last_slot,
                    normalize_members(members),
                    size,
                    checksum,
                    self._latch,
                    self._install_file,
                    ballot,
                )
            except OSError as exc:
                raise self._latch.fail("starting an incoming snapshot", exc) from exc
            self._incoming = writer
            return writer

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

    def __enter__(self) -> Storage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
