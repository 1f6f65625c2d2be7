"""Snapshot files: written atomically, read and received in chunks.

A snapshot can be hundreds of megabytes, too big for an LMDB value that is copied on
every read, so its bytes live in a plain file next to the LMDB environment and only its
description (:class:`~pyxos.storage.records.SnapshotRecord`) goes into LMDB, in the same
transaction that compacts the log. A file becomes a snapshot in four steps, each of which
leaves the previous snapshot intact if the process dies:

1. write the bytes to a temporary (or ``.part``) file, chunk by chunk, and ``fsync`` it;
2. ``rename`` it to its final, unique name and ``fsync`` the directory;
3. commit the meta record and the compaction in one LMDB transaction and sync it;
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pyxos.core.ballot import ZERO, Ballot
from pyxos.storage.errors import (
    CorruptStorageError,
    FailureLatch,
    SnapshotVerifyError,
)
from pyxos.storage.interface import SnapshotReaderBase
from pyxos.storage.records import ENCODER, INCOMING_DECODER, IncomingRecord, SnapshotInfo

CHUNK_SIZE = 1 << 20
"""Write and checksum granularity: large enough for throughput, small enough for memory."""

SNAPSHOT_PREFIX = "snap-"
SNAPSHOT_SUFFIX = ".bin"
TMP_PREFIX = ".tmp-"
INCOMING_META = "incoming.meta"
INCOMING_PREFIX = "incoming-"
INCOMING_SUFFIX = ".part"


def new_token() -> str:
    """A random name part, so a new file can never replace one that is still referenced."""
    return uuid.uuid4().hex[:16]


def snapshot_filename(last_slot: int, token: str) -> str:
    """Final name of a snapshot file; sorts by slot, unique by token."""
    return f"{SNAPSHOT_PREFIX}{last_slot:020d}-{token}{SNAPSHOT_SUFFIX}"


def incoming_filename(token: str) -> str:
    """Name of the partial file of an incoming transfer."""
    return f"{INCOMING_PREFIX}{token}{INCOMING_SUFFIX}"


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


Installer = Callable[[Path, SnapshotInfo], SnapshotInfo]
"""Makes a finished, fsynced file the current snapshot (storage side; see Storage)."""


class FileIncomingSnapshot:
    """Receives a snapshot in chunks into a partial file, resumable after a disconnect.

    ``write_chunk`` is idempotent: a chunk already written is ignored, a chunk that
    overlaps the end contributes only its new bytes, and a chunk past the end (a gap) is
    not written. It always returns the next offset it expects, so the sender just resumes
    from there. The partial file and a side record survive a restart of the process: a
    later ``begin_incoming`` for the same snapshot picks up where this one stopped.
    """

    def __init__(
        self,
        directory: Path,
        record: IncomingRecord,
        fd: int,
        next_offset: int,
        crc: int,
        latch: FailureLatch,
        installer: Installer,
    ) -> None:
        self.record = record
        self._directory = directory
        self._fd: int | None = fd
        self._next = next_offset
        self._crc = crc
        self._latch = latch
        self._installer = installer

    @property
    def next_offset(self) -> int:
        """The offset of the first byte not yet received."""
        return self._next

    @property
    def size(self) -> int:
        """Total bytes expected."""
        return self.record.size

    @property
    def last_slot(self) -> int:
        """The last slot the snapshot being received covers."""
        return self.record.last_slot

    @property
    def part_path(self) -> Path:
        """The partial file."""
        return self._directory / incoming_filename(self.record.token)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError("incoming snapshot writer is closed (finished, aborted or replaced)")
        self._latch.check()
        return self._fd

    def write_chunk(self, offset: int, data: bytes) -> int:
        """Store ``data`` received for ``offset``; return the next offset expected."""
        fd = self._open_fd()
        skip = chunk_skip(offset, len(data), self._next, self.record.size)
        if skip is None:
            return self._next
        tail = memoryview(data)[skip:]
        try:
            pwrite_all(fd, tail, self._next)
        except OSError as exc:
            raise self._latch.fail("writing incoming snapshot", exc) from exc
        self._crc = zlib.crc32(tail, self._crc)
        self._next = offset + len(data)
        return self._next

    def finish(self) -> SnapshotInfo:
        """Verify size and checksum, then make this the current snapshot and compact.

        Raises :class:`SnapshotVerifyError` (and discards the data) if the checksum given
        to ``begin_incoming`` does not match, ``ValueError`` if bytes are missing, and
        :class:`~pyxos.storage.errors.StaleSnapshotError` if a snapshot at least as new
        was installed meanwhile.
        """
        fd = self._open_fd()
        if self._next != self.record.size:
            raise ValueError(f"incomplete snapshot: {self._next} of {self.record.size} bytes")
        expected = self.record.checksum
        if expected is not None and expected != self._crc:
            self.abort()
            raise SnapshotVerifyError(
                f"incoming snapshot through slot {self.record.last_slot} fails its checksum "
                f"(crc32 {self._crc:08x}, sender says {expected:08x}); discarded"
            )
        try:
            if os.fstat(fd).st_size != self.record.size:
                self.abort()
                raise SnapshotVerifyError("incoming snapshot file has the wrong size; discarded")
            os.fsync(fd)
        except OSError as exc:
            raise self._latch.fail("syncing incoming snapshot", exc) from exc
        self._fd = None
        os.close(fd)
        record = self.record
        info = SnapshotInfo(
            record.last_slot, record.members, record.size, self._crc, None, record.ballot
        )
        try:
            return self._installer(self.part_path, info)
        finally:
            # Installed or not, this transfer is over; stale leftovers go at next open.
            with contextlib.suppress(OSError):
                (self._directory / INCOMING_META).unlink()
            with contextlib.suppress(OSError):
                self.part_path.unlink()

    def close(self) -> None:
        """Stop writing but keep the partial data, so a later transfer can resume."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def abort(self) -> None:
        """Stop and delete the partial data."""
        self.close()
        for path in (self._directory / INCOMING_META, self.part_path):
            with contextlib.suppress(OSError):
                path.unlink()


def open_incoming(
    directory: Path,
    last_slot: int,
    members: tuple[int, ...],
    size: int,
    checksum: int | None,
    latch: FailureLatch,
    installer: Installer,
    ballot: Ballot = ZERO,
) -> FileIncomingSnapshot:
    """Resume the partial transfer of this very snapshot if there is one, else start anew.

    ``ballot`` is the sender's promise floor for the snapshot, recorded with it.

    Resuming re-reads the partial file once to recompute its checksum (one chunk at a
    time): the file, not a number saved somewhere, is what will be installed.
    """
    wanted = (last_slot, members, size, checksum)
    meta_path = directory / INCOMING_META
    record: IncomingRecord | None = None
    try:
        record = INCOMING_DECODER.decode(meta_path.read_bytes())
    except (OSError, ValueError):
        record = None  # none, or unreadable: start over (msgspec errors are ValueErrors)
    if (
        record is not None
        and (
            record.last_slot,
            record.members,
            record.size,
            record.checksum,
        )
        == wanted
    ):
        part = directory / incoming_filename(record.token)
        try:
            fd = os.open(part, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                have = os.fstat(fd).st_size
                if have > size:
                    os.ftruncate(fd, 0)
                    have = 0
                crc = crc32_of(fd, have)
            except BaseException:
                os.close(fd)
                raise
            return FileIncomingSnapshot(directory, record, fd, have, crc, latch, installer)
    # Start over: drop any other partial transfer first.
    discard_incoming(directory)
    record = IncomingRecord(new_token(), last_slot, members, size, checksum, ballot)
    part = directory / incoming_filename(record.token)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        tmp = directory / f"{TMP_PREFIX}{new_token()}"
        tmp.write_bytes(ENCODER.encode(record))
        os.replace(tmp, meta_path)  # no fsync: losing it only restarts the transfer
    except BaseException:
        os.close(fd)
        raise
    return FileIncomingSnapshot(directory, record, fd, 0, 0, latch, installer)


def discard_incoming(directory: Path) -> None:
    """Delete any partial transfer."""
    for path in directory.iterdir():
        name = path.name
        if name == INCOMING_META or (
            name.startswith(INCOMING_PREFIX) and name.endswith(INCOMING_SUFFIX)
        ):
            path.unlink(missing_ok=True)


def clean_directory(directory: Path, keep: str | None, floor: int) -> list[str]:
    """Delete files a crash may have left: temporaries, snapshots other than ``keep``,
    and partial transfers that the incoming record does not name or that are no newer
    than ``floor`` (the current snapshot's slot). Returns the names deleted.
    """
    record: IncomingRecord | None = None
    try:
        record = INCOMING_DECODER.decode((directory / INCOMING_META).read_bytes())
    except (OSError, ValueError):
        record = None
    removed: list[str] = []
    if record is not None and record.last_slot <= floor:
        (directory / INCOMING_META).unlink()
        removed.append(INCOMING_META)
        record = None
    keep_part = incoming_filename(record.token) if record is not None else None
    for path in sorted(directory.iterdir()):
        name = path.name
        stale = (
            name.startswith(TMP_PREFIX)
            or (name.startswith(SNAPSHOT_PREFIX) and name != keep)
            or (
                name.startswith(INCOMING_PREFIX)
                and name.endswith(INCOMING_SUFFIX)
                and name != keep_part
            )
        )
        if stale and path.is_file():
            path.unlink()
            removed.append(name)
    return removed


__all__ = [
    "CHUNK_SIZE",
    "FileIncomingSnapshot",
    "FileSnapshotReader",
    "chunk_skip",
    "clean_directory",
    "crc32_of",
    "fsync_dir",
    "iter_chunks",
    "open_incoming",
    "verify_file",
    "write_new_file",
]
