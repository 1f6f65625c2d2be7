"""I/O failures are fatal and sticky ("fsyncgate"): injected, and a real ENOSPC on a tmpfs."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import LmdbStorage, Storage, StorageError

MEMBERS = (1, 2, 3)


def entry(slot: int, size: int = 16) -> SlotValue:
    return SlotValue(slot, Ballot(1, 1), (b"x" * size,))


def open_store(path: Path) -> Storage:
    return LmdbStorage(path, node_id=1, cluster_id="c1", members=MEMBERS)


def raiser(exc: BaseException) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> Any:
        raise exc

    return fail


def assert_sticky(store: Storage) -> None:
    """Every call now raises StorageError, whatever it is."""
    assert store.failed
    calls: list[Callable[[], object]] = [
        lambda: store.write(Persist(commit_index=1)),
        lambda: store.write(Persist(entries=[entry(99)], must_sync=True)),
        store.load,
        lambda: store.save_snapshot(1000, MEMBERS, b"s"),
        store.open_snapshot,
        lambda: store.begin_incoming(1000, MEMBERS, 1),
    ]
    for call in calls:
        with pytest.raises(StorageError, match="failed earlier"):
            call()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node1"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Storage]:
    s = open_store(data_dir)
    yield s
    s.close()


def test_failed_fsync_is_fatal_and_sticky(
    store: Storage, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(Persist(promised=Ballot(1, 1), entries=[entry(1)], must_sync=True))
    cause = OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(store, "_sync_env", raiser(cause))
    with pytest.raises(StorageError, match="fsync") as info:
        store.write(Persist(entries=[entry(2)], must_sync=True))
    assert info.value.__cause__ is cause
    assert store.syncs == 1
    # Even once the disk "recovers", a later sync must not be trusted.
    monkeypatch.undo()
    assert_sticky(store)
    store.close()
    # A restarted process reads whatever reached the disk, and may go on.
    with open_store(data_dir) as again:
        state, _ = again.load()
        assert [e.slot for e in state.entries][:1] == [1]


def test_lmdb_error_in_a_commit_is_fatal(store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    real = store._env

    class FailingEnv:
        def begin(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("write"):
                raise lmdb.Error("mdb_txn_commit", errno.ENOSPC)
            assert real is not None
            return real.begin(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    monkeypatch.setattr(store, "_env", FailingEnv())
    with pytest.raises(StorageError, match="writing a batch") as info:
        store.write(Persist(commit_index=0))
    assert isinstance(info.value.__cause__, lmdb.Error)
    assert_sticky(store)


def test_simulated_enospc_on_sync(store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "_sync_env", raiser(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(StorageError) as info:
        store.write(Persist(entries=[entry(1)], must_sync=True))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert_sticky(store)


def test_simulated_enospc_writing_a_snapshot_leaves_no_temporary(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "pwrite", raiser(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(StorageError, match="writing a snapshot file"):
        store.save_snapshot(5, MEMBERS, b"x" * 100_000)
    monkeypatch.undo()
    assert list(store.snapshot_dir.iterdir()) == []
    assert store.snapshot is None
    assert_sticky(store)


def test_failed_file_fsync_of_a_snapshot_is_fatal(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_snapshot(1, MEMBERS, b"first")
    monkeypatch.setattr(os, "fsync", raiser(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StorageError):
        store.save_snapshot(2, MEMBERS, b"second")
    monkeypatch.undo()
    assert store.snapshot is not None and store.snapshot.last_slot == 1
    assert_sticky(store)


def test_failed_sync_while_installing_an_incoming_snapshot_is_fatal(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = store.begin_incoming(5, MEMBERS, 4, zlib.crc32(b"data"))
    writer.write_chunk(0, b"data")
    monkeypatch.setattr(store, "_sync_env", raiser(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StorageError, match="fsync"):
        writer.finish()
    assert_sticky(store)


def test_enospc_receiving_a_chunk_is_fatal(store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = store.begin_incoming(5, MEMBERS, 10)
    monkeypatch.setattr(os, "pwrite", raiser(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(StorageError, match="incoming"):
        writer.write_chunk(0, b"0123456789")
    monkeypatch.undo()
    with pytest.raises(StorageError, match="failed earlier"):
        writer.write_chunk(0, b"0123456789")
    assert_sticky(store)


def test_read_error_while_sending_a_snapshot_is_fatal(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_snapshot(3, MEMBERS, b"abcdef")
    reader = store.open_snapshot()
    assert reader is not None
    with reader:
        monkeypatch.setattr(os, "pread", raiser(OSError(errno.EIO, "Input/output error")))
        with pytest.raises(StorageError, match="reading snapshot"):
            reader.read(0, 3)
        monkeypatch.undo()
        with pytest.raises(StorageError, match="failed earlier"):
            reader.read(0, 3)
    assert_sticky(store)


def test_close_after_a_failure_releases_the_data_dir(
    store: Storage, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(Persist(commit_index=0))  # dirty: a clean close would sync
    monkeypatch.setattr(store, "_sync_env", raiser(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StorageError):
        store.write(Persist(must_sync=True))
    store.close()  # no second sync attempt, no error
    monkeypatch.undo()
    open_store(data_dir).close()


# ---------------------------------------------------------------------- real ENOSPC


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, when this process may mount one (root in a permissive container)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    point = tmp_path / "tiny"
    point.mkdir()
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run([umount, "-l", str(point)], capture_output=True, check=False)


def test_real_enospc_in_lmdb_loses_no_acknowledged_write(tiny_fs: Path) -> None:
    acknowledged = 0
    with open_store(tiny_fs / "node1") as store:
        with pytest.raises(StorageError) as info:
            for slot in range(1, 10_000):
                store.write(Persist(entries=[entry(slot, 4096)], must_sync=True))
                acknowledged = slot
        # LMDB reports a short write on a full disk as EIO, not ENOSPC: what matters is
        # that it is fatal.
        assert isinstance(info.value.__cause__, lmdb.Error)
        assert acknowledged > 100
        assert_sticky(store)
    # Make room (as an operator would), restart: everything acknowledged is there.
    with open_store(tiny_fs / "node1") as store:
        state, _ = store.load()
        assert [e.slot for e in state.entries][:acknowledged] == list(range(1, acknowledged + 1))


def test_real_enospc_writing_a_snapshot(tiny_fs: Path) -> None:
    with open_store(tiny_fs / "node1") as store:
        with pytest.raises(StorageError, match="snapshot") as info:
            store.save_snapshot(1, MEMBERS, b"z" * (4 << 20))
        cause = info.value.__cause__
        assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC
        assert list(store.snapshot_dir.iterdir()) == []  # the partial file is gone
        assert_sticky(store)
