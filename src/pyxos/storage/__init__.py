"""Stable storage for a pyxos node: acceptor state, the chosen log and snapshots.

:class:`Storage` (the default: LMDB in safe mode, two fsyncs per batch) and
:class:`SqliteStorage` (SQLite in WAL mode, one) keep them in a data dir, snapshot bytes in files
beside; :func:`open_storage` picks one by name. :class:`MemoryStorage` is a model of them
for tests that can lose unsynced writes on demand. All satisfy :class:`StorageBackend`.
Errors are described in :mod:`pyxos.storage.errors`: a :class:`StorageError` is fatal and
sticky, a :class:`CorruptStorageError` means "rejoin as a learner".
"""

import os
from typing import Any

from pyxos.storage.errors import (
    CorruptStorageError,
    IdentityMismatchError,
    SnapshotVerifyError,
    StaleSnapshotError,
    StorageError,
)
from pyxos.storage.interface import IncomingSnapshot, SnapshotReader, StorageBackend
from pyxos.storage.lmdb_store import Storage, move_aside
from pyxos.storage.memory import MemoryIncomingSnapshot, MemorySnapshotReader, MemoryStorage
from pyxos.storage.records import SnapshotInfo
from pyxos.storage.snapshots import CHUNK_SIZE, FileIncomingSnapshot, FileSnapshotReader
from pyxos.storage.sqlite_store import SqliteStorage

__all__ = [
    "CHUNK_SIZE",
    "CorruptStorageError",
    "FileIncomingSnapshot",
    "FileSnapshotReader",
    "IdentityMismatchError",
    "IncomingSnapshot",
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
    "move_aside",
    "open_storage",
]


ENGINES = {"sqlite": SqliteStorage, "lmdb": Storage}
"""Storage engines by the name ``--storage`` and ``storage =`` take."""


def open_storage(engine: str, path: str | os.PathLike[str], **kwargs: Any) -> Storage:
    """Open (or create) a data dir with the named engine; see :class:`Storage` for
    ``kwargs``. A data dir made by the other engine is refused with a clear error."""
    try:
        cls = ENGINES[engine]
    except KeyError:
        raise ValueError(
            f"unknown storage engine {engine!r}; choose from {', '.join(ENGINES)}"
        ) from None
    return cls(path, **kwargs)
