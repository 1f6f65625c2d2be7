"""The LMDB engine: meta and log in one LMDB environment, in safe mode.

``D/lmdb/`` holds the environment, with sub-databases ``meta`` and ``log`` (one record
per slot under an 8-byte big-endian key, so byte order is slot order: loading is one
cursor scan and compaction deletes a prefix).

The environment is opened in LMDB's safe mode (``sync=True``, ``metasync=True``): each
commit fsyncs its data pages, then its meta page. That is two ``fdatasync`` calls per
batch rather than one, but the alternative (``sync=False`` and one ``env.sync`` after the
commit) lets the kernel write the meta page before the pages it points to, and a power
loss in that window corrupts the B-tree (LMDB's documentation of ``MDB_NOSYNC``). A node
that may have forgotten a promise must not vote, so we pay for the ordering: about 3,100
synced batches/s here instead of 4,400-5,100 (bench/storage_bench.py).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from pyxos.storage import snapshots as files
from pyxos.storage.base import Storage
from pyxos.storage.datadir import K_IDENTITY, Transaction
from pyxos.storage.errors import CorruptStorageError
from pyxos.storage.records import ENCODER, ENGINE_MARKERS, Identity, key_slot, seal, slot_key

log = logging.getLogger(__name__)

ENV_DIR = ENGINE_MARKERS["lmdb"][0]
_INIT_DIR = "lmdb.init"
_META_DB = b"meta"
_LOG_DB = b"log"

DEFAULT_MAP_SIZE = 1 << 30
"""Initial LMDB map size (address space, not disk: the file grows with the data)."""
DEFAULT_MAX_MAP_SIZE = 1 << 40
"""The map doubles on ``MapFullError`` up to this."""

_CORRUPT_LMDB = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError)
"""LMDB errors that mean the file is damaged rather than the disk or the process failing."""


def _open_env(path: Path, map_size: int, sync: bool = True) -> lmdb.Environment:
    return lmdb.open(
        str(path),
        map_size=map_size,
        subdir=True,
        max_dbs=4,
        sync=sync,  # data pages, then the meta page: see the module docstring
        metasync=sync,
        create=False,
        lock=True,
    )


class LmdbStorage(Storage):
    """A node's stable storage on LMDB; same contract as :class:`Storage`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = DEFAULT_MAX_MAP_SIZE,
        **kwargs: Any,
    ) -> None:
        self._map_size = map_size
        self._max_map_size = max(max_map_size, map_size)
        self._env: lmdb.Environment | None = None
        super().__init__(path, **kwargs)

    @property
    def map_size(self) -> int:
        """The current LMDB map size (grows on demand)."""
        return self._map_size

    def _env_or_raise(self) -> lmdb.Environment:
        self._latch.check()
        assert self._env is not None
        return self._env

    ENGINE = "lmdb"
    CORRUPT_ERRORS: tuple[type[BaseException], ...] = _CORRUPT_LMDB
    """Engine errors that mean the store is damaged (rejoin as a learner)."""
    ENGINE_ERRORS: tuple[type[BaseException], ...] = (lmdb.Error,)
    """Engine errors that mean the disk or the process failed (fatal, sticky)."""

    @property
    def data_file(self) -> Path:
        """The file that holds the records (named in every damage report)."""
        return self.path / ENV_DIR / "data.mdb"

    def _engine_open(self) -> None:
        """Open the store (its records are read by :meth:`_engine_meta`)."""
        self._env = env = _open_env(self.path / ENV_DIR, self._map_size, self.sync_commits)
        self._map_size = env.info()["map_size"]
        try:
            self._meta = env.open_db(_META_DB, create=False)
            self._log = env.open_db(_LOG_DB, create=False)
        except lmdb.NotFoundError as exc:
            raise CorruptStorageError(
                f"data dir {self.path}: LMDB sub-database missing ({exc}): meta is missing"
            ) from exc

    def _engine_meta(self) -> dict[bytes, bytes]:
        """Every sealed meta record by key (a handful: identity, promise, ...)."""
        env = self._env_or_raise()
        with env.begin() as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=self._meta)}

    def _engine_commit(self, txn: Transaction) -> None:
        env = self._env_or_raise()
        meta_db, log_db = self._meta, self._log

        def body(t: lmdb.Transaction[Any]) -> None:
            for key, value in txn.meta:
                t.put(key, value, db=meta_db)
            for slot, value in txn.rows:
                t.put(slot_key(slot), value, db=log_db)
            if txn.delete_through > 0:
                self._delete_through(t, txn.delete_through)

        self._commit(env, body, txn.what)

    def _engine_log(self, floor: int) -> list[tuple[int, bytes]]:
        """The sealed log records above ``floor``, in slot order."""
        env = self._env_or_raise()
        with env.begin() as txn:
            cursor = txn.cursor(db=self._log)
            if not cursor.set_range(slot_key(floor + 1)):
                return []
            return [(key_slot(k), v) for k, v in cursor.iternext(keys=True, values=True)]

    def _engine_close(self) -> None:
        if self._env is not None:
            env, self._env = self._env, None
            env.close()

    def _engine_is_open(self) -> bool:
        return self._env is not None

    def _engine_create(self, identity: Identity) -> None:
        """Create the environment beside its final place, then rename it in.

        So a data dir either has a complete, synced identity record or no environment at
        all: an environment without an identity can then only mean damage.
        """
        env_dir = self.path / ENV_DIR
        tmp = self.path / _INIT_DIR
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        env = lmdb.open(str(tmp), map_size=self._map_size, max_dbs=4, sync=False)
        try:
            meta = env.open_db(_META_DB)
            env.open_db(_LOG_DB)
            with env.begin(write=True) as txn:
                txn.put(K_IDENTITY, seal(K_IDENTITY, ENCODER.encode(identity)), db=meta)
            env.sync(True)
        finally:
            env.close()
        files.fsync_dir(tmp)
        os.rename(tmp, env_dir)
        files.fsync_dir(self.path)

    def _commit(
        self, env: lmdb.Environment, body: Callable[[lmdb.Transaction[Any]], None], what: str
    ) -> None:
        """Run ``body`` in one write transaction, growing the map and retrying when full."""
        while True:
            try:
                with env.begin(write=True) as txn:
                    body(txn)
            except lmdb.MapFullError as exc:
                if self._map_size * 2 > self._max_map_size:
                    raise self._latch.fail(f"{what} (map full at {self._map_size})", exc) from exc
                try:
                    env.set_mapsize(self._map_size * 2)
                except lmdb.Error as grow_exc:
                    raise self._latch.fail("growing the LMDB map", grow_exc) from grow_exc
                self._map_size *= 2
                log.info("LMDB map grown to %d bytes", self._map_size)
                continue
            except _CORRUPT_LMDB as exc:
                raise self._latch.fail(what, exc, CorruptStorageError) from exc
            except (lmdb.Error, OSError) as exc:
                raise self._latch.fail(what, exc) from exc
            self._dirty = True
            return

    def _delete_through(self, txn: lmdb.Transaction[Any], through: int) -> int:
        """Delete every log record at or below ``through``: a prefix, since keys sort."""
        limit = slot_key(through)
        cursor = txn.cursor(db=self._log)
        deleted = 0
        if cursor.first():
            while True:
                key = cursor.key()
                if not key or key > limit or not cursor.delete():
                    break
                deleted += 1
        return deleted
