"""Durable acceptor state and chosen log on SQLite in WAL mode: one fsync per batch.

Layout of a data dir::

    D/LOCK                 flock'ed while open (as for LMDB)
    D/sqlite/pyxos.db      tables ``meta`` (key -> record) and ``log`` (slot -> record)
    D/sqlite/pyxos.db-wal  SQLite's write-ahead log
    D/snapshots/           snapshot files (see :mod:`pyxos.storage.snapshots`)

Why a second engine, and the default: LMDB's safe mode pays two ``fdatasync`` calls per
transaction (data pages, then the meta page); SQLite in WAL mode with ``synchronous=FULL``
appends the transaction's pages to the WAL and syncs it once, and the WAL file is reused
after each checkpoint, so the sync rarely has file metadata to write. Alone on the disk the
two engines are equal (``bench/storage_bench.py``: 3,090 and 3,180 synced single-entry
writes/s); with three replicas sharing one disk SQLite's writes took 0.8-0.9 ms against
LMDB's 1.3-1.4 ms and the cluster ran 10.4-11.3k SET/s against 9.0-9.6k (alternating runs,
bench/README.md). ``--storage lmdb`` still makes LMDB data dirs; a data dir records which
engine made it, is opened with that engine by default, and refuses the other.

Records are the same sealed msgspec encodings as in the LMDB store (a meta record's
checksum covers its key's bytes, a log record's the 8-byte slot key). Everything else (the data dir
lock, snapshot files, batching, sticky failures) is inherited from
:class:`pyxos.storage.base.Storage`; only the engine methods are written here.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pyxos.storage import snapshots as files
from pyxos.storage.base import Storage
from pyxos.storage.datadir import K_IDENTITY, Transaction
from pyxos.storage.errors import CorruptStorageError, StorageError
from pyxos.storage.records import ENCODER, ENGINE_MARKERS, Identity, seal

SQLITE_DIR, DB_FILE = ENGINE_MARKERS["sqlite"]
_INIT_FILE = "pyxos.db.init"

_SCHEMA = (
    "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE log (slot INTEGER PRIMARY KEY, v BLOB NOT NULL)",
)


class _Damaged(sqlite3.DatabaseError):
    """Stands in for SQLite's own corruption errors, which share the DatabaseError class
    with failures of the disk; :func:`_classify` tells them apart by message."""


_CORRUPT_MESSAGES = ("malformed", "not a database", "corrupt", "no such table")


def _classify(exc: sqlite3.Error) -> sqlite3.Error:
    """SQLite reports damage and I/O failure with overlapping classes: sort by message."""
    text = str(exc).lower()
    if any(m in text for m in _CORRUPT_MESSAGES):
        damaged = _Damaged(str(exc))
        damaged.__cause__ = exc
        return damaged
    return exc


def _connect(path: Path, sync: bool = True) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
    # I/O thread, the snapshot thread and the loop use the connection, always under the
    # store's lock.
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL" if sync else "PRAGMA synchronous=OFF")
        # Checkpoint (copy the WAL into the database and sync it) every ~16 MiB rather than
        # every 4 MiB: fewer stalls of the batch that crosses the threshold.
        db.execute("PRAGMA wal_autocheckpoint=4096")
        db.execute("PRAGMA cache_size=-32768")
    except BaseException:
        db.close()
        raise
    return db


class SqliteStorage(Storage):
    """A node's stable storage on SQLite (WAL, ``synchronous=FULL``); see the module
    docstring. Same contract as :class:`~pyxos.storage.base.Storage`."""

    ENGINE = "sqlite"
    CORRUPT_ERRORS: tuple[type[BaseException], ...] = (_Damaged,)
    ENGINE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,)

    _db: sqlite3.Connection | None = None

    def _engine_create(self, identity: Identity) -> None:
        """Create the database beside its final name, sync it, then rename it in: a data
        dir either has a complete identity record or no database at all."""
        directory = self.path / SQLITE_DIR
        directory.mkdir(exist_ok=True)
        tmp = directory / _INIT_FILE
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
        db = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT INTO meta (k, v) VALUES (?, ?)",
                (K_IDENTITY.decode(), seal(K_IDENTITY, ENCODER.encode(identity))),
            )
            db.execute("COMMIT")
        finally:
            db.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, directory / DB_FILE)
        files.fsync_dir(directory)
        files.fsync_dir(self.path)

    @property
    def data_file(self) -> Path:
        return self.path / SQLITE_DIR / DB_FILE

    def _engine_open(self) -> None:
        try:
            self._db = db = _connect(self.data_file, self.sync_commits)
            db.execute("SELECT count(*) FROM log WHERE slot < 0").fetchone()
        except sqlite3.Error as exc:
            raise _classify(exc) from exc

    def _engine_meta(self) -> dict[bytes, bytes]:
        db = self._db
        assert db is not None
        try:
            return {str(k).encode(): bytes(v) for k, v in db.execute("SELECT k, v FROM meta")}
        except sqlite3.Error as exc:
            raise _classify(exc) from exc

    def _engine_commit(self, txn: Transaction) -> None:
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if txn.meta:
                    db.executemany(
                        "REPLACE INTO meta (k, v) VALUES (?, ?)",
                        [(k.decode(), v) for k, v in txn.meta],
                    )
                if txn.rows:
                    db.executemany("REPLACE INTO log (slot, v) VALUES (?, ?)", txn.rows)
                if txn.delete_through > 0:
                    db.execute("DELETE FROM log WHERE slot <= ?", (txn.delete_through,))
                db.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced here
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            cause = _classify(exc)
            kind = CorruptStorageError if isinstance(cause, _Damaged) else StorageError
            raise self._latch.fail(txn.what, cause, kind) from exc
        self._dirty = True

    def _engine_log(self, floor: int) -> list[tuple[int, bytes]]:
        db = self._db
        assert db is not None
        try:
            cursor = db.execute("SELECT slot, v FROM log WHERE slot > ? ORDER BY slot", (floor,))
            return [(int(slot), bytes(v)) for slot, v in cursor]
        except sqlite3.Error as exc:
            raise _classify(exc) from exc

    def _engine_is_open(self) -> bool:
        return self._db is not None

    def _engine_close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()
