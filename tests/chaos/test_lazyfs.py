"""The lazy file system through a real FUSE mount: each test writes through the mount,
cuts the power, and judges what the backing directory (the disk) kept.

Root only, with /dev/fuse and libfuse 3 (the Makefile installs fuse3 as root).
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from pyxos.chaos.power import LazyMount, unavailable_reason
from pyxos.core.ballot import Ballot
from pyxos.storage import open_storage

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"lazy file system: {unavailable_reason()}"
)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[LazyMount]:
    m = LazyMount(tmp_path / "disk", tmp_path / "mnt", log_path=tmp_path / "lazyfs.log")
    m.start()
    yield m
    m.stop()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def test_synced_data_survives_and_unsynced_data_is_lost(mount: LazyMount) -> None:
    mnt, disk = mount.mountpoint, mount.backing
    write_file(mnt / "kept", b"synced", sync=True)
    write_file(mnt / "lost", b"not synced", sync=False)
    fsync_path(mnt)
    write_file(mnt / "kept", b"overwritten, not synced", sync=False)
    assert (mnt / "kept").read_bytes() == b"overwritten, not synced"
    report = mount.cut()
    assert report["unsynced_files"] == 2
    assert (disk / "kept").read_bytes() == b"synced"
    assert (disk / "lost").read_bytes() == b""  # its entry was synced, its data never
    mount.start()
    assert (mnt / "kept").read_bytes() == b"synced"


def test_entries_and_renames_are_durable_only_after_the_directory_sync(
    mount: LazyMount,
) -> None:
    mnt, disk = mount.mountpoint, mount.backing
    write_file(mnt / "config", b"v1", sync=True)
    fsync_path(mnt)
    write_file(mnt / "config.tmp", b"v2", sync=True)
    os.rename(mnt / "config.tmp", mnt / "config")
    (mnt / "newdir").mkdir()
    assert (mnt / "config").read_bytes() == b"v2"
    mount.cut()
    assert sorted(p.name for p in disk.iterdir()) == ["config"]
    assert (disk / "config").read_bytes() == b"v1"

    mount.start()
    write_file(mnt / "config.tmp", b"v2", sync=True)
    os.rename(mnt / "config.tmp", mnt / "config")
    fsync_path(mnt)
    mount.cut()
    assert sorted(p.name for p in disk.iterdir()) == ["config"]
    assert (disk / "config").read_bytes() == b"v2"


def test_a_torn_write_leaves_a_prefix(mount: LazyMount) -> None:
    mnt, disk = mount.mountpoint, mount.backing
    write_file(mnt / "f", b"." * 10_000, sync=True)
    fsync_path(mnt)
    with open(mnt / "f", "r+b") as f:
        f.write(b"x" * 10_000)
        f.flush()
    report = mount.cut(tear_seed=3)
    (tear,) = report["torn"]
    assert tear["file"] == "f" and 0 < tear["kept"] < 10_000
    assert (disk / "f").read_bytes() == b"x" * tear["kept"] + b"." * (10_000 - tear["kept"])


def test_msync_of_a_shared_map_is_a_sync(mount: LazyMount) -> None:
    mnt, disk = mount.mountpoint, mount.backing
    for name in ("flushed", "not-flushed"):
        write_file(mnt / name, bytes(8192), sync=True)
    fsync_path(mnt)
    for name in ("flushed", "not-flushed"):
        with open(mnt / name, "r+b") as f, mmap.mmap(f.fileno(), 8192) as m:
            m[4000:4010] = b"mapped!!!!"
            if name == "flushed":
                m.flush()  # msync(MS_SYNC): the kernel sends the pages, then an fsync
    mount.cut()
    assert (disk / "flushed").read_bytes()[4000:4010] == b"mapped!!!!"
    assert (disk / "not-flushed").read_bytes() == bytes(8192)


@pytest.mark.parametrize("synchronous", ["FULL", "OFF"])
def test_sqlite_in_wal_mode(mount: LazyMount, synchronous: str) -> None:
    path = mount.mountpoint / "t.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    for k in range(300):
        db.execute("INSERT INTO t VALUES (?, ?)", (k, os.urandom(300)))
    assert mount.mountpoint.joinpath("t.db-shm").stat().st_size > 0  # the WAL index, mmap'ed
    second = sqlite3.connect(path)  # shares the WAL index through the map
    assert second.execute("SELECT count(*) FROM t").fetchone() == (300,)
    mount.cut(tear_seed=11)
    db.close()
    second.close()
    mount.start()
    after = sqlite3.connect(path)
    assert after.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = after.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()
    if synchronous == "FULL":
        assert rows == (1,)
        assert after.execute("SELECT count(*) FROM t").fetchone() == (300,)
    else:
        assert rows == (0,)  # nothing was ever synced, not even the table
    after.close()


@pytest.mark.parametrize("sync", [True, False])
def test_lmdb_writes_with_pwrite_and_syncs_with_fdatasync(mount: LazyMount, sync: bool) -> None:
    (mount.mountpoint / "env").mkdir()
    fsync_path(mount.mountpoint)
    env = lmdb.open(str(mount.mountpoint / "env"), map_size=1 << 24, sync=True)
    with env.begin(write=True) as txn:
        txn.put(b"first", b"synced")
    env.close()
    fsync_path(mount.mountpoint / "env")
    env = lmdb.open(str(mount.mountpoint / "env"), map_size=1 << 24, sync=sync, metasync=sync)
    with env.begin(write=True) as txn:
        for k in range(500):
            txn.put(b"k%d" % k, os.urandom(100))
    mount.cut(tear_seed=5)
    env.close()
    env = lmdb.open(str(mount.backing / "env"), map_size=1 << 24)
    with env.begin() as txn:
        assert txn.get(b"first") == b"synced"
        assert txn.stat()["entries"] == (501 if sync else 1)
    env.close()


WRITER = """
import sys, time
from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import open_storage

engine, path, sync = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
store = open_storage(engine, path, node_id=1, cluster_id="c", members=(1, 2, 3), sync=sync)
for s in range(1, 41):
    entry = SlotValue(s, Ballot(2, 1), (b"cmd%d" % s,), False)
    store.write(Persist(promised=Ballot(2, 1), entries=[entry], must_sync=True))
print("written", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("engine", ["sqlite", "lmdb"])
@pytest.mark.parametrize("sync", [True, False])
def test_pyxos_storage_keeps_what_it_synced(mount: LazyMount, engine: str, sync: bool) -> None:
    """A process writes through the engine, is killed holding its files, power is cut."""
    path = mount.mountpoint / "d"
    args = [sys.executable, "-c", WRITER, engine, str(path), "1" if sync else "0"]
    with subprocess.Popen(args, stdout=subprocess.PIPE) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"written\n"
        writer.kill()
    mount.cut(tear_seed=1)
    mount.start()
    store = open_storage(engine, path, node_id=1, cluster_id="c", members=(1, 2, 3))
    state, _ = store.load()
    store.close()
    if sync:
        assert [e.slot for e in state.entries] == list(range(1, 41))
        assert state.promised == Ballot(2, 1)
    else:
        assert state.entries == [] and state.promised == Ballot(0, 0)  # acknowledged, lost
