"""Stable storage for a pyxos node: acceptor state, the chosen log and snapshots.

:class:`Storage` keeps them in a data dir on LMDB (snapshot bytes in files beside it) and
syncs once per batch; :class:`MemoryStorage` is a model of it for tests that can lose
unsynced writes on demand. Both satisfy :class:`StorageBackend`. Errors are described in
:mod:`pyxos.storage.errors`: a :class:`StorageError` is fatal and sticky, a
:class:`CorruptStorageError` means "rejoin as a learner".
"""

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
    "StaleSnapshotError",
    "Storage",
    "StorageBackend",
    "StorageError",
    "move_aside",
]
