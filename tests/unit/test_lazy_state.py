"""The lazy file system's model, without FUSE: what a power cut keeps and what it loses.

Each test works on a :class:`LazyState` over a backing directory, cuts the power, and
judges the backing directory (what the disk holds) or a new state mounted on it.
"""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from pyxos.chaos.lazy_inode import PAGE
from pyxos.chaos.lazy_state import ROOT, LazyState


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    return tmp_path / "disk"


def boot(disk: Path) -> LazyState:
    return LazyState(disk, sync_backing=False)


def put(fs: LazyState, path: str, data: bytes, *, sync: bool) -> None:
    try:
        node = fs.lookup(path)
    except FileNotFoundError:
        node = fs.create(path, 0o644)
    fs.opened(node)
    fs.truncate(node, 0)
    fs.write(node, 0, data)
    if sync:
        fs.fsync(node)
    fs.released(node)


def read(fs: LazyState, path: str) -> bytes:
    node = fs.lookup(path)
    return fs.read(node, 0, node.size + 10)


def sync_dir(fs: LazyState, path: str = "/") -> None:
    fs.fsyncdir(fs.lookup(path))


def test_synced_data_survives_a_cut_and_unsynced_data_does_not(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/a", b"first", sync=True)
    sync_dir(fs)
    assert (disk / "a").read_bytes() == b"first"
    put(fs, "/a", b"second, not synced", sync=False)
    assert read(fs, "/a") == b"second, not synced"  # what the process sees
    assert (disk / "a").read_bytes() == b"first"  # what the disk holds
    report = fs.cut()
    assert report["unsynced_files"] == 1 and report["unsynced_bytes"] == 18
    assert read(boot(disk), "/a") == b"first"


def test_a_new_file_needs_its_directory_synced(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/synced-file-only", b"data", sync=True)
    assert not (disk / "synced-file-only").exists()
    fs.cut()
    with pytest.raises(FileNotFoundError):
        boot(disk).lookup("/synced-file-only")

    fs = boot(disk)
    put(fs, "/both", b"data", sync=True)
    sync_dir(fs)
    fs.cut()
    assert read(boot(disk), "/both") == b"data"


def test_a_synced_directory_entry_without_synced_data_is_an_empty_file(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/f", b"never synced", sync=False)
    sync_dir(fs)
    fs.cut()
    assert read(boot(disk), "/f") == b""


def test_a_rename_is_durable_only_once_the_directory_is_synced(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/current", b"old", sync=True)
    sync_dir(fs)
    put(fs, "/tmp", b"new", sync=True)
    fs.rename("/tmp", "/current")
    assert read(fs, "/current") == b"new"
    fs.cut()
    after = boot(disk)
    assert read(after, "/current") == b"old"
    with pytest.raises(FileNotFoundError):
        after.lookup("/tmp")

    put(after, "/tmp", b"new", sync=True)
    after.rename("/tmp", "/current")
    sync_dir(after)
    after.cut()
    assert read(boot(disk), "/current") == b"new"
    assert sorted(p.name for p in disk.iterdir()) == ["current"]


def test_an_unlink_is_durable_only_once_the_directory_is_synced(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/f", b"x", sync=True)
    sync_dir(fs)
    fs.unlink("/f")
    fs.cut()
    fs = boot(disk)
    assert read(fs, "/f") == b"x"
    fs.unlink("/f")
    sync_dir(fs)
    fs.cut()
    assert not (disk / "f").exists()


def test_syncing_one_directory_commits_the_journal_up_to_its_last_change(disk: Path) -> None:
    fs = boot(disk)
    fs.create("/d", 0o755, is_dir=True)
    put(fs, "/d/inner", b"in d", sync=True)
    put(fs, "/later", b"after", sync=True)
    sync_dir(fs, "/d")  # takes the mkdir of /d (made before) with it, not /later
    fs.create("/e", 0o755, is_dir=True)
    sync_dir(fs, "/e")  # /e's own entry is a change to /, not to /e
    fs.cut()
    after = boot(disk)
    assert read(after, "/d/inner") == b"in d"
    for lost in ("/later", "/e"):
        with pytest.raises(FileNotFoundError):
            after.lookup(lost)
    after.create("/e", 0o755, is_dir=True)
    put(after, "/last", b"z", sync=True)
    sync_dir(after)
    after.cut()
    assert read(boot(disk), "/last") == b"z"


def test_a_rename_across_directories_is_one_change(disk: Path) -> None:
    fs = boot(disk)
    for d in ("/a", "/b"):
        fs.create(d, 0o755, is_dir=True)
    put(fs, "/a/f", b"moving", sync=True)
    sync_dir(fs, "/a")
    fs.rename("/a/f", "/b/f")
    sync_dir(fs, "/b")
    fs.cut()
    after = boot(disk)
    assert read(after, "/b/f") == b"moving"
    assert after.lookup("/a").entries == {}


def test_a_torn_write_leaves_a_prefix_chosen_by_the_seed(disk: Path) -> None:
    kept = []
    for _ in range(2):
        fs = boot(disk)
        put(fs, "/f", bytes(3 * PAGE), sync=True)
        sync_dir(fs)
        node = fs.lookup("/f")
        fs.opened(node)
        fs.write(node, 100, b"a" * 500)  # lost whole: not the last write
        fs.write(node, PAGE - 10, b"b" * 2 * PAGE)
        report = fs.cut(random.Random(7))
        (tear,) = report["torn"]
        assert tear["offset"] == PAGE - 10 and 0 < tear["kept"] < 2 * PAGE
        data = (disk / "f").read_bytes()
        expected = bytearray(3 * PAGE)
        expected[PAGE - 10 : PAGE - 10 + tear["kept"]] = b"b" * tear["kept"]
        assert data == bytes(expected)
        kept.append(tear["kept"])
    assert kept[0] == kept[1]


def test_reads_see_writes_across_pages_and_truncates_hide_old_bytes(disk: Path) -> None:
    fs = boot(disk)
    put(fs, "/f", b"x" * (2 * PAGE + 5), sync=True)
    sync_dir(fs)
    node = fs.lookup("/f")
    fs.opened(node)
    fs.write(node, PAGE - 2, b"0123")
    assert fs.read(node, PAGE - 4, 8) == b"xx0123xx"
    fs.truncate(node, 10)
    fs.truncate(node, PAGE + 20)  # grows again: zeros, not the old bytes
    assert fs.read(node, 0, PAGE + 100) == b"x" * 10 + bytes(PAGE + 10)
    fs.write(node, PAGE + 20, b"end")
    fs.fsync(node)
    assert (disk / "f").read_bytes() == b"x" * 10 + bytes(PAGE + 10) + b"end"


def test_an_unlinked_open_file_keeps_working_and_its_synced_data_moves_aside(
    disk: Path,
) -> None:
    fs = boot(disk)
    put(fs, "/f", b"v1", sync=True)
    sync_dir(fs)
    node = fs.lookup("/f")
    fs.opened(node)
    fs.unlink("/f")
    sync_dir(fs)  # the unlink is durable; the open file is not gone yet
    assert not (disk / "f").exists()
    fs.write(node, 0, b"v2")
    fs.fsync(node)
    assert fs.read(node, 0, 10) == b"v2"
    assert list(disk.iterdir()) == []
    fs.released(node)
    assert list(fs.staging.iterdir()) == []  # nobody can reach it: its copy is gone


def test_namespace_errors_are_those_of_a_file_system(disk: Path) -> None:
    fs = boot(disk)
    fs.create("/d", 0o755, is_dir=True)
    put(fs, "/d/f", b"", sync=False)
    cases = [
        (lambda: fs.create("/d", 0o644), errno.EEXIST),
        (lambda: fs.unlink("/d", is_dir=True), errno.ENOTEMPTY),
        (lambda: fs.unlink("/d"), errno.EISDIR),
        (lambda: fs.lookup("/d/f/x"), errno.ENOTDIR),
        (lambda: fs.rename("/d", "/d/sub"), errno.EINVAL),
        (lambda: fs.rename("/d/f", "/d/g", 1), errno.EINVAL),
        (lambda: fs.lookup("/missing"), errno.ENOENT),
    ]
    for call, code in cases:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == code
    fs.cut()
    with pytest.raises(OSError) as info:
        fs.lookup("/")
    assert info.value.errno == errno.EIO  # after the cut nothing answers


def test_a_backing_directory_is_served_as_it_is(disk: Path) -> None:
    (disk / "sub").mkdir(parents=True)
    (disk / "sub" / "f").write_bytes(b"on disk")
    fs = boot(disk)
    assert read(fs, "/sub/f") == b"on disk"
    assert fs.attributes(fs.lookup("/sub"))["st_nlink"] == 2
    assert set(fs.inodes[ROOT].entries) == {"sub"}
