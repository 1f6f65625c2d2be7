"""Stable storage for a pyxos node: acceptor state, the chosen log and snapshots.

:class:`SqliteStorage` (the default: SQLite in WAL mode, one fsync per batch) and
:class:`LmdbStorage` (LMDB in safe mode, two), engines under one base :class:`Storage`,
keep them in a data dir, snapshot bytes in files
beside; :func:`open_storage` picks one by name. :class:`MemoryStorage` is a model of them
for tests that can lose unsynced writes on demand. All satisfy :class:`StorageBackend`.
Errors are described in :mod:`pyxos.storage.errors`: a :class:`StorageError` is fatal and
sticky, a :class:`CorruptStorageError` means "rejoin as a learner".
"""

import os
from typing import Any

from pyxos.storage.base import Storage, move_aside
from pyxos.storage.errors import (
    CorruptStorageError,
    IdentityMismatchError,
    SnapshotVerifyError,
    StaleSnapshotError,
    StorageError,
)
from pyxos.storage.incoming import FileIncomingSnapshot
from pyxos.storage.interface import IncomingSnapshot, SnapshotReader, StorageBackend
from pyxos.storage.lmdb_store import LmdbStorage
from pyxos.storage.memory import MemoryIncomingSnapshot, MemorySnapshotReader, MemoryStorage
from pyxos.storage.records import SnapshotInfo, engine_of
from pyxos.storage.snapshots import CHUNK_SIZE, FileSnapshotReader
from pyxos.storage.sqlite_store import SqliteStorage

__all__ = [
    "CHUNK_SIZE",
    "CorruptStorageError",
    "FileIncomingSnapshot",
    "FileSnapshotReader",
    "IdentityMismatchError",
    "IncomingSnapshot",
    "LmdbStorage",
    "MemoryIncomingSnapshot",
    "MemorySnapshotReader",
    "MemoryStorage",
    "SnapshotInfo",
    "SnapshotReader",
    "SnapshotVerifyError",
    "SqliteStorage",
    "StaleSnapshotError",
    "Storage",
    "StorageBackend",
    "StorageError",
    "engine_of",
    "move_aside",
    "open_storage",
]


ENGINES: dict[str, type[Storage]] = {"sqlite": SqliteStorage, "lmdb": LmdbStorage}
"""Storage engines by the name ``--storage`` and ``storage =`` take."""
DEFAULT_ENGINE = "sqlite"
"""What a new data dir gets: measured 9-18% more SETs/s than LMDB on a 3-node cluster
sharing one disk (bench/README.md), since it syncs once per batch instead of twice."""


def open_storage(engine: str | None, path: str | os.PathLike[str], **kwargs: Any) -> Storage:
    """Open (or create) a data dir; see :class:`Storage` for ``kwargs``.

    ``engine=None`` opens whatever the data dir holds and makes a new one with
    :data:`DEFAULT_ENGINE`. A named engine that differs from what the data dir holds is
    refused with a clear error.
    """
    if engine is None:
        engine = engine_of(path) or DEFAULT_ENGINE
    try:
        cls = ENGINES[engine]
    except KeyError:
        raise ValueError(
            f"unknown storage engine {engine!r}; choose from {', '.join(ENGINES)}"
        ) from None
    return cls(path, **kwargs)
