"""Snapshot files: written atomically and read in chunks (received in :mod:`.incoming`).

A snapshot can be hundreds of megabytes, too big for an LMDB value that is copied on
every read, so its bytes live in a plain file next to the engine's store and only its
description (:class:`~pyxos.storage.records.SnapshotRecord`) goes into the store, in the
same transaction that compacts the log. A file becomes a snapshot in four steps, each of
which leaves the previous snapshot intact if the process dies:

1. write the bytes to a temporary (or ``.part``) file, chunk by chunk, and ``fsync`` it;
2. ``rename`` it to its final, unique name and ``fsync`` the directory;
3. commit the meta record and the compaction in one transaction of the store and sync it;
4. only then delete the previous snapshot file.

Files that no meta record names (left over by a crash between steps) are deleted when the
storage is opened. Nothing here holds more than one chunk in memory.

Helpers raise plain ``OSError``; the storage layer turns it into a ``StorageError``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from pyxos.storage.errors import (
    CorruptStorageError,
    FailureLatch,
)
from pyxos.storage.interface import SnapshotReaderBase
from pyxos.storage.records import SnapshotInfo

CHUNK_SIZE = 1 << 20
"""Write and checksum granularity: large enough for throughput, small enough for memory."""

SNAPSHOT_PREFIX = "snap-"
SNAPSHOT_SUFFIX = ".bin"
TMP_PREFIX = ".tmp-"


def new_token() -> str:
    """A random name part, so a new file can never replace one that is still referenced."""
    return uuid.uuid4().hex[:16]


def snapshot_filename(last_slot: int, token: str) -> str:
    """Final name of a snapshot file; sorts by slot, unique by token."""
    return f"{SNAPSHOT_PREFIX}{last_slot:020d}-{token}{SNAPSHOT_SUFFIX}"


def fsync_dir(path: Path) -> None:
    """Make renames and unlinks in ``path`` durable (a file's fsync does not cover them)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is written (it may write less, e.g. near ENOSPC)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - the kernel raises rather than return 0 for files
            raise OSError("pwrite wrote nothing")
        view = view[n:]
        offset += n


def iter_chunks(
    data: bytes | Iterable[bytes], chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes | memoryview]:
    """Split ``bytes`` into chunks without copying; pass an iterable of chunks through."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]
    else:
        yield from data


def chunk_skip(offset: int, length: int, next_offset: int, size: int) -> int | None:
    """How many leading bytes of a received chunk are already stored (``None``: all or
    none of it is usable, as for a duplicate or for a chunk after a gap).

    This is what makes receiving idempotent and resumable: the receiver keeps exactly one
    contiguous prefix and tells the sender where it ends.
    """
    if offset < 0 or length < 0:
        raise ValueError(f"bad chunk at {offset} of {length} bytes")
    end = offset + length
    if end > size:
        raise ValueError(f"chunk {offset}..{end} runs past the snapshot size {size}")
    if offset > next_offset or end <= next_offset:
        return None
    return next_offset - offset


def write_new_file(directory: Path, chunks: Iterable[bytes | memoryview]) -> tuple[Path, int, int]:
    """Write ``chunks`` to a new temporary file in ``directory`` and fsync it.

    Returns ``(path, size, crc32)``. On any error the temporary file is removed. The
    caller renames it into place (and fsyncs the directory) when it is ready to use it.
    """
    path = directory / f"{TMP_PREFIX}{new_token()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    size = 0
    crc = 0
    try:
        try:
            for chunk in chunks:
                pwrite_all(fd, chunk, size)
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path, size, crc


def crc32_of(fd: int, size: int) -> int:
    """CRC-32 of the first ``size`` bytes of ``fd``, read one chunk at a time.

    Raises :class:`ValueError` if the file is shorter than ``size``.
    """
    crc = 0
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(CHUNK_SIZE, size - offset), offset)
        if not chunk:
            raise ValueError(f"file ends at {offset}, expected {size} bytes")
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


def verify_file(info: SnapshotInfo, *, checksum: bool) -> None:
    """Check a snapshot file's size (and checksum) against its meta record.

    Raises :class:`CorruptStorageError` on a mismatch or a missing file, and lets other
    ``OSError`` s through.
    """
    assert info.path is not None
    try:
        fd = os.open(info.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise CorruptStorageError(f"snapshot file {info.path} is missing") from exc
    try:
        actual = os.fstat(fd).st_size
        if actual != info.size:
            raise CorruptStorageError(
                f"snapshot file {info.path} has {actual} bytes, meta says {info.size}"
            )
        if checksum:
            crc = crc32_of(fd, info.size)
            if crc != info.checksum:
                raise CorruptStorageError(
                    f"snapshot file {info.path} fails its checksum "
                    f"(crc32 {crc:08x}, meta says {info.checksum:08x})"
                )
    finally:
        os.close(fd)


class FileSnapshotReader(SnapshotReaderBase):
    """Random-access reads of one snapshot file, for chunked, resumable sending.

    It holds the file open, so a newer snapshot replacing (and unlinking) this one does not
    disturb a transfer in progress: the sender finishes sending a consistent snapshot.
    """

    def __init__(self, info: SnapshotInfo, fd: int, latch: FailureLatch) -> None:
        self.info = info
        self._fd: int | None = fd
        self._latch = latch

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer only at the end; ``b""`` at the end)."""
        self._check_read(offset, n, closed=self._fd is None)
        assert self._fd is not None
        n = min(n, self.info.size - offset)
        self._latch.check()
        try:
            data = os.pread(self._fd, n, offset)
        except OSError as exc:
            raise self._latch.fail("reading snapshot", exc) from exc
        if len(data) != n:
            cause = ValueError(f"short read at {offset}: file shrank under us")
            raise self._latch.fail("reading snapshot", cause, CorruptStorageError)
        return data

    def close(self) -> None:
        """Release the file."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


__all__ = [
    "CHUNK_SIZE",
    "FileSnapshotReader",
    "chunk_skip",
    "crc32_of",
    "fsync_dir",
    "iter_chunks",
    "verify_file",
    "write_new_file",
]
