"""Snapshot files of a node's storage: saving, installing, reading and receiving them.

A snapshot's bytes live in a file of their own beside the engine's store (see
:mod:`pyxos.storage.snapshots` for the file steps, :mod:`pyxos.storage.incoming` for the
chunked receiver); the store only holds its meta record. Bytes are written and fsynced
outside the storage lock, so a large snapshot never stalls a batch; the rename and the
meta record then happen under the lock, in one transaction and one sync, and the old file
is deleted only once that is durable. The log the snapshot covers is deleted after that,
in short transactions with the lock released between them (:meth:`_compact_in_steps`).
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from pyxos.core.ballot import ZERO, Ballot
from pyxos.storage import incoming
from pyxos.storage import snapshots as files
from pyxos.storage.datadir import K_SNAPSHOT, DataDir, Transaction
from pyxos.storage.errors import CorruptStorageError, check_newer
from pyxos.storage.records import (
    ENCODER,
    SnapshotInfo,
    SnapshotRecord,
    normalize_members,
    seal,
)

__all__ = ["SnapshotStore"]


class SnapshotStore(DataDir):
    """The snapshot half of :class:`~pyxos.storage.base.Storage`."""

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
        membership: bytes = b"",
    ) -> SnapshotRecord:
        """Rename a finished file to its final unique name and make the rename durable."""
        token = files.new_token()
        name = files.snapshot_filename(last_slot, token)
        try:
            os.rename(staged, self.snapshot_dir / name)
            files.fsync_dir(self.snapshot_dir)
        except OSError as exc:
            raise self._latch.fail("placing a snapshot file", exc) from exc
        return SnapshotRecord(
            last_slot, normalize_members(members), size, crc, name, ballot, membership
        )

    def _make_current(self, record: SnapshotRecord) -> SnapshotInfo:
        """Point at the new snapshot; the old file goes once the change is synced."""
        old, self._snapshot = self._snapshot, self._info(record)
        if old is not None and old.path is not None:
            self._pending_unlinks.append(old.path)
        return self._snapshot

    COMPACT_STEP_SECONDS = 0.01
    """About how long one compaction transaction may hold the lock a batch write needs."""

    def _install_file(self, path: Path, info: SnapshotInfo) -> SnapshotInfo:
        """Make a finished file the current snapshot: its meta record in one transaction,
        one sync, then the old file is deleted; then the log it covers goes, in steps.
        """
        self._check_open()
        with self._lock:
            self._latch.check()
            check_newer(info.last_slot, self.snapshot_slot)
            previous = self.snapshot_slot
            record = self._place(
                path,
                info.last_slot,
                info.members,
                info.size,
                info.checksum,
                info.ballot,
                info.membership,
            )
            self._engine_commit(
                Transaction(
                    "installing a snapshot",
                    meta=[(K_SNAPSHOT, seal(K_SNAPSHOT, ENCODER.encode(record)))],
                )
            )
            current = self._make_current(record)
            self._sync()
        self._compact_in_steps(previous, record.last_slot)
        return current

    def _compact_in_steps(self, start: int, through: int) -> None:
        """Delete the log at or below ``through`` in transactions of about
        :data:`COMPACT_STEP_SECONDS` each, releasing the lock between them.

        Deleted in one transaction, the log a snapshot of 1M keys covers (121 MB of rows)
        held the lock for 0.67 s, and every batch write waited that long: the cluster
        stopped committing. Rows at or below the snapshot are never read again (``load``
        reads the log above it, and a write plans above it), so a crash part-way leaves
        only dead rows, which the first step of the next compaction deletes (each step
        deletes everything at or below its bound). The step adapts to the rows' size.
        """
        bound, step = start, 16
        while bound < through:
            bound = min(through, bound + step)
            began = time.perf_counter()
            with self._lock:
                if not self._engine_is_open():
                    return  # closed meanwhile: what is left are dead rows, as after a crash
                self._latch.check()
                self._engine_commit(Transaction("compacting the log", delete_through=bound))
            took = time.perf_counter() - began
            if took < self.COMPACT_STEP_SECONDS / 2:
                step *= 2
            elif took > self.COMPACT_STEP_SECONDS * 2:
                step = max(1, step // 2)

    def save_snapshot(
        self,
        last_slot: int,
        members: Sequence[int],
        data: bytes | Iterable[bytes],
        ballot: Ballot = ZERO,
        membership: bytes = b"",
    ) -> SnapshotInfo:
        """Save the state machine's snapshot through ``last_slot`` and compact the log.

        ``data`` is the whole snapshot or an iterable of chunks (a generator keeps memory
        bounded by one chunk). ``ballot`` is the node's promise when the state was
        captured: the snapshot's promise floor. Durable when this returns. Raises
        :class:`StaleSnapshotError` unless ``last_slot`` is newer than the current one.
        """
        self._latch.check()
        check_newer(last_slot, self.snapshot_slot)
        path, size, crc = self._stage(data)
        try:
            info = SnapshotInfo(
                last_slot, normalize_members(members), size, crc, None, ballot, membership
            )
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
        membership: bytes = b"",
    ) -> incoming.FileIncomingSnapshot:
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
        check_newer(last_slot, self.snapshot_slot)
        with self._lock:
            self._latch.check()
            if self._incoming is not None:
                self._incoming.close()
                self._incoming = None
            try:
                writer = incoming.open_incoming(
                    self.snapshot_dir,
                    last_slot,
                    normalize_members(members),
                    size,
                    checksum,
                    self._latch,
                    self._install_file,
                    ballot,
                    membership,
                )
            except OSError as exc:
                raise self._latch.fail("starting an incoming snapshot", exc) from exc
            self._incoming = writer
            return writer
