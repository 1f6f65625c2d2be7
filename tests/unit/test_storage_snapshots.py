"""Snapshot files: atomic save, chunked reads, chunked resumable receive, damage detection."""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import (
    CorruptStorageError,
    LmdbStorage,
    SnapshotVerifyError,
    StaleSnapshotError,
    Storage,
    StorageError,
)

MEMBERS = (1, 2, 3)
CHUNK = 64 * 1024


def open_store(path: Path) -> Storage:
    return LmdbStorage(path, node_id=2, cluster_id="c1", members=MEMBERS)


def blob(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def snapshot_files(store: Storage) -> list[str]:
    return sorted(p.name for p in store.snapshot_dir.iterdir())


def read_all(store: Storage, chunk: int = CHUNK) -> bytes:
    reader = store.open_snapshot()
    assert reader is not None
    with reader:
        parts = []
        offset = 0
        while offset < reader.size:
            part = reader.read(offset, chunk)
            assert 0 < len(part) <= chunk
            parts.append(part)
            offset += len(part)
        assert reader.read(reader.size, chunk) == b""
    return b"".join(parts)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node2"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Storage]:
    s = open_store(data_dir)
    yield s
    s.close()


def test_save_then_read_in_chunks_and_after_reopen(data_dir: Path) -> None:
    data = blob(1_000_003)
    with open_store(data_dir) as store:
        entries = [SlotValue(s, Ballot(1, 1), (b"c",), True) for s in range(1, 31)]
        store.write(Persist(entries=entries, commit_index=30, must_sync=True))
        info = store.save_snapshot(25, (3, 1, 2), data)
        assert (info.last_slot, info.members, info.size) == (25, MEMBERS, len(data))
        assert info.checksum == zlib.crc32(data)
        assert read_all(store) == data
    with open_store(data_dir) as store:
        state, loaded = store.load()
        assert loaded == info
        assert (state.snapshot_slot, state.members) == (25, MEMBERS)
        assert [e.slot for e in state.entries] == list(range(26, 31))
        assert store.read_snapshot() == data
        assert read_all(store, chunk=4096) == data


def test_save_from_chunks_and_empty_snapshot(store: Storage) -> None:
    data = blob(300_000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 10_000):
            yield data[start : start + 10_000]

    info = store.save_snapshot(4, MEMBERS, chunks())
    assert info.size == len(data) and info.checksum == zlib.crc32(data)
    assert store.read_snapshot() == data
    empty = store.save_snapshot(5, MEMBERS, b"")
    assert empty.size == 0
    assert store.read_snapshot() == b""


def test_only_the_newest_snapshot_file_is_kept(store: Storage) -> None:
    for slot in (3, 9, 27):
        store.save_snapshot(slot, MEMBERS, b"state %d" % slot)
        names = snapshot_files(store)
        assert len(names) == 1 and names[0].startswith(f"snap-{slot:020d}-")
    assert store.read_snapshot() == b"state 27"


def test_an_open_reader_survives_a_newer_snapshot(store: Storage) -> None:
    store.save_snapshot(3, MEMBERS, b"old state")
    reader = store.open_snapshot()
    assert reader is not None
    with reader:
        store.save_snapshot(4, MEMBERS, b"new state")
        assert reader.read(0, 100) == b"old state"
        assert reader.info.last_slot == 3
    assert store.read_snapshot() == b"new state"


def test_reader_rejects_bad_ranges(store: Storage) -> None:
    assert store.open_snapshot() is None
    with pytest.raises(ValueError, match="no snapshot"):
        store.read_snapshot()
    store.save_snapshot(1, MEMBERS, b"abc")
    reader = store.open_snapshot()
    assert reader is not None
    with reader:
        assert reader.read(1, 100) == b"bc"
        with pytest.raises(ValueError):
            reader.read(4, 1)
    with pytest.raises(ValueError, match="closed"):
        reader.read(0, 1)
    assert not store.failed


def test_stale_snapshots_are_refused(store: Storage) -> None:
    store.save_snapshot(10, MEMBERS, b"ten")
    for slot in (5, 10):
        with pytest.raises(StaleSnapshotError):
            store.save_snapshot(slot, MEMBERS, b"x")
        with pytest.raises(StaleSnapshotError):
            store.begin_incoming(slot, MEMBERS, 3)
    assert not store.failed
    assert store.read_snapshot() == b"ten"


def feed(writer_write: Callable[[int, bytes], int], data: bytes, start: int, stop: int) -> int:
    """Send chunks covering ``data[start:stop]`` as a sender would; return the next offset."""
    nxt = start
    for offset in range(start, stop, CHUNK):
        nxt = writer_write(offset, data[offset : min(offset + CHUNK, stop)])
    return nxt


def test_incoming_resumes_after_a_disconnect(store: Storage) -> None:
    data = blob(3 * 1024 * 1024 + 123)
    entries = [SlotValue(s, Ballot(1, 1), (b"c",)) for s in range(1, 60)]
    store.write(Persist(entries=entries, must_sync=True))
    checksum = zlib.crc32(data)
    writer = store.begin_incoming(50, MEMBERS, len(data), checksum)
    assert writer.next_offset == 0
    k = 17
    assert feed(writer.write_chunk, data, 0, k * CHUNK) == k * CHUNK
    # Disconnect: the transfer is started again from scratch on the receiving side.
    resumed = store.begin_incoming(50, MEMBERS, len(data), checksum)
    assert resumed.next_offset == k * CHUNK
    with pytest.raises(ValueError, match="closed"):
        writer.write_chunk(k * CHUNK, data[k * CHUNK : (k + 1) * CHUNK])
    assert feed(resumed.write_chunk, data, resumed.next_offset, len(data)) == len(data)
    info = resumed.finish()
    assert (info.last_slot, info.size, info.checksum) == (50, len(data), checksum)
    assert store.read_snapshot() == data
    state, _ = store.load()
    assert state.snapshot_slot == 50
    assert [e.slot for e in state.entries] == list(range(51, 60))
    assert len(snapshot_files(store)) == 1  # no partial or side file left


def test_incoming_resumes_after_a_restart(data_dir: Path) -> None:
    data = blob(500_000)
    with open_store(data_dir) as store:
        writer = store.begin_incoming(8, MEMBERS, len(data), zlib.crc32(data))
        feed(writer.write_chunk, data, 0, 3 * CHUNK)
    with open_store(data_dir) as store:
        writer = store.begin_incoming(8, MEMBERS, len(data), zlib.crc32(data))
        assert writer.next_offset == 3 * CHUNK
        feed(writer.write_chunk, data, writer.next_offset, len(data))
        writer.finish()
        assert store.read_snapshot() == data


def test_write_chunk_is_idempotent(store: Storage) -> None:
    data = bytes(range(100))
    writer = store.begin_incoming(3, MEMBERS, len(data), zlib.crc32(data))
    assert writer.write_chunk(0, data[:40]) == 40
    assert writer.write_chunk(0, data[:40]) == 40  # duplicate
    assert writer.write_chunk(10, data[10:30]) == 40  # inside what we have
    assert writer.write_chunk(60, data[60:80]) == 40  # gap: not written, ask for 40
    assert writer.write_chunk(30, data[30:70]) == 70  # overlap: only the new part
    with pytest.raises(ValueError, match="past the snapshot size"):
        writer.write_chunk(90, data[90:] + b"extra")
    with pytest.raises(ValueError, match="incomplete"):
        writer.finish()
    assert writer.write_chunk(70, data[70:]) == 100
    writer.finish()
    assert store.read_snapshot() == data


def test_incoming_checksum_mismatch_is_rejected(store: Storage) -> None:
    store.save_snapshot(2, MEMBERS, b"current")
    data = blob(200_000)
    writer = store.begin_incoming(9, MEMBERS, len(data), zlib.crc32(data))
    damaged = bytearray(data)
    damaged[123_456] ^= 0x01
    feed(writer.write_chunk, bytes(damaged), 0, len(data))
    with pytest.raises(SnapshotVerifyError, match="checksum"):
        writer.finish()
    assert not store.failed
    assert store.read_snapshot() == b"current"
    assert len(snapshot_files(store)) == 1
    # The damaged partial data is gone: the next attempt starts from zero.
    assert store.begin_incoming(9, MEMBERS, len(data), zlib.crc32(data)).next_offset == 0


def test_a_different_incoming_snapshot_starts_over(store: Storage) -> None:
    writer = store.begin_incoming(5, MEMBERS, 100)
    writer.write_chunk(0, b"a" * 50)
    other = store.begin_incoming(6, MEMBERS, 100)
    assert other.next_offset == 0
    parts = [n for n in snapshot_files(store) if n.endswith(".part")]
    assert len(parts) == 1


def test_incoming_that_became_stale_is_not_installed(store: Storage) -> None:
    writer = store.begin_incoming(10, MEMBERS, 3)
    writer.write_chunk(0, b"abc")
    store.save_snapshot(12, MEMBERS, b"newer")
    with pytest.raises(StaleSnapshotError):
        writer.finish()
    assert store.read_snapshot() == b"newer"
    names = snapshot_files(store)
    assert len(names) == 1 and names[0].startswith("snap-00000000000000000012-")


def test_abort_discards_the_partial_data(store: Storage) -> None:
    writer = store.begin_incoming(5, MEMBERS, 10)
    writer.write_chunk(0, b"12345")
    writer.abort()
    assert snapshot_files(store) == []
    assert store.begin_incoming(5, MEMBERS, 10).next_offset == 0


def test_corrupt_snapshot_file_is_detected_on_load(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        info = store.save_snapshot(4, MEMBERS, blob(100_000))
    assert info.path is not None
    with open(info.path, "r+b") as f:
        f.seek(50_000)
        byte = f.read(1)
        f.seek(50_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with open_store(data_dir) as store:
        with pytest.raises(CorruptStorageError, match="checksum"):
            store.load()
        assert store.failed
        with pytest.raises(StorageError):
            store.open_snapshot()
    with open_store(data_dir) as store:
        store.load(verify_snapshot=False)  # the caller's choice to skip the full read
        with pytest.raises(CorruptStorageError):
            store.read_snapshot()


def test_truncated_or_missing_snapshot_file_is_detected_on_open(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        info = store.save_snapshot(4, MEMBERS, b"0123456789")
    assert info.path is not None
    os.truncate(info.path, 5)
    with pytest.raises(CorruptStorageError, match="has 5 bytes"):
        open_store(data_dir)
    info.path.unlink()
    with pytest.raises(CorruptStorageError, match="missing"):
        open_store(data_dir)


def test_leftovers_of_a_crash_are_removed_on_open(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        store.save_snapshot(4, MEMBERS, b"keep")
        snap_dir = store.snapshot_dir
    (snap_dir / ".tmp-deadbeef").write_bytes(b"half written")
    (snap_dir / "snap-00000000000000000009-0123456789abcdef.bin").write_bytes(b"unreferenced")
    (snap_dir / "incoming-feedface.part").write_bytes(b"no record names it")
    with open_store(data_dir) as store:
        names = snapshot_files(store)
        assert len(names) == 1 and names[0].startswith("snap-00000000000000000004-")
        assert store.read_snapshot() == b"keep"


def test_a_partial_transfer_made_stale_is_removed_on_open(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        writer = store.begin_incoming(5, MEMBERS, 10)
        writer.write_chunk(0, b"01234")
        writer.close()  # kept for resuming...
        store.save_snapshot(7, MEMBERS, b"seven")  # ...but now it is older than ours
        assert len(snapshot_files(store)) == 3
    with open_store(data_dir) as store:
        names = snapshot_files(store)
        assert len(names) == 1 and names[0].startswith("snap-00000000000000000007-")
