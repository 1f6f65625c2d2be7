"""Receiving a snapshot in chunks, resumably, and cleaning up what a crash left behind.

A lagging peer's snapshot arrives in chunks (:mod:`pyxos.runtime.snapshot_transfer`) into a
partial ``.part`` file beside the snapshots, described by a side record
(``incoming.meta``), so that a transfer cut by a disconnect or a restart resumes where it
stopped. When the last chunk is in, the file is checked, fsynced and handed to the
storage's installer, which makes it the current snapshot in the four steps of
:mod:`pyxos.storage.snapshots`. :func:`clean_directory` runs when the storage opens and
deletes every file that no record names: temporaries, replaced snapshots, and partial
transfers that are stale or unnamed.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from pyxos.core.ballot import ZERO, Ballot
from pyxos.storage.errors import FailureLatch, SnapshotVerifyError
from pyxos.storage.records import ENCODER, INCOMING_DECODER, IncomingRecord, SnapshotInfo
from pyxos.storage.snapshots import (
    SNAPSHOT_PREFIX,
    TMP_PREFIX,
    chunk_skip,
    crc32_of,
    new_token,
    pwrite_all,
)

__all__ = [
    "FileIncomingSnapshot",
    "Installer",
    "clean_directory",
    "discard_incoming",
    "open_incoming",
]

INCOMING_META = "incoming.meta"
INCOMING_PREFIX = "incoming-"
INCOMING_SUFFIX = ".part"


def incoming_filename(token: str) -> str:
    """Name of the partial file of an incoming transfer."""
    return f"{INCOMING_PREFIX}{token}{INCOMING_SUFFIX}"


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
            record.last_slot,
            record.members,
            record.size,
            self._crc,
            None,
            record.ballot,
            record.membership,
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
    membership: bytes = b"",
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
    record = IncomingRecord(new_token(), last_slot, members, size, checksum, ballot, membership)
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
