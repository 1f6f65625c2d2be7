"""What a process sees on the lazy file system, and what a power cut leaves of it.

The lazy file system (:mod:`pyxos.chaos.lazyfs`) serves this model over FUSE. It keeps
two states of one directory tree:

- the *durable* state is the backing directory itself: what a disk holds once the power
  is gone;
- the *volatile* state is what processes read and write: the durable state plus every
  write, create, rename and unlink not yet made durable, held in memory.

A write changes the volatile copy of 4 KiB pages; ``fsync``/``fdatasync`` of the file
writes its pages (and its size) through to its backing file. Directory entries follow the
rule POSIX gives and careful programs rely on: a create, mkdir, unlink, rmdir or rename
is durable only once its directory is fsynced. Namespace changes are kept as a journal in
the order they were made, and syncing a directory makes durable the journal up to the
last change that touched it (with all before it, as a journaling file system commits its
log in order), so a cut never leaves a state no real disk could: a file in a directory
whose own creation was lost, say.

A file whose content was synced but whose name is not durable yet keeps that content in a
staging file beside the backing directory; syncing the directory moves it into place. A
cut (:meth:`LazyState.cut`) forgets everything volatile, optionally first writing a
random prefix of each file's last unsynced write (a torn write), and the next mount
starts again from the backing directory, as a machine boots from its disk.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyxos.chaos.lazy_inode import PAGE, Inode, fs_error

ROOT = 1


@dataclass(slots=True)
class _Op:
    """One namespace change not yet durable, in the order it was made."""

    kind: str  # create, mkdir, unlink, rmdir, rename
    ino: int
    parent: int
    name: str
    new_parent: int = 0
    new_name: str = ""

    def touches(self, directory: int) -> bool:
        return directory == self.parent or (self.kind == "rename" and directory == self.new_parent)


class LazyState:
    """The volatile and durable trees of one mount; see the module docstring.

    Methods raise ``OSError`` with the errno a file system would return. Not thread-safe:
    the FUSE adapter serializes calls.
    """

    def __init__(self, backing: Path, staging: Path | None = None, *, sync_backing: bool = True):
        self.backing = Path(backing)
        self.staging = staging or self.backing.parent / f".{self.backing.name}.lazyfs-staging"
        self.sync_backing = sync_backing
        """Also fsync the backing files, so sync latency stays that of the real disk."""
        self.dead = False
        self.counters = {"fsync": 0, "fsyncdir": 0, "writes": 0, "written_bytes": 0}
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.backing.mkdir(parents=True, exist_ok=True)
        self._journal: list[_Op] = []
        self._next_ino = ROOT + 1
        self.inodes: dict[int, Inode] = {ROOT: Inode(ROOT, True, 0o755)}
        self._load(self.backing, ROOT)

    def _load(self, path: Path, parent: int) -> None:
        for child in sorted(os.scandir(path), key=lambda e: e.name):
            st = child.stat(follow_symlinks=False)
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue  # nothing pyxos makes; not served
            node = self._new(stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode))
            node.name = node.durable_name = (parent, child.name)
            node.size = node.durable_size = node.visible_base = st.st_size
            node.mtime_ns = node.ctime_ns = st.st_mtime_ns
            self.inodes[parent].entries[child.name] = node.ino
            self.inodes[parent].durable_entries[child.name] = node.ino
            if node.is_dir:
                self._load(Path(child.path), node.ino)

    def _new(self, is_dir: bool, mode: int) -> Inode:
        node = Inode(self._next_ino, is_dir, mode)
        self._next_ino += 1
        self.inodes[node.ino] = node
        return node

    # ------------------------------------------------------------------ paths

    def _check(self) -> None:
        if self.dead:
            raise fs_error(errno.EIO)

    def lookup(self, path: str) -> Inode:
        self._check()
        node = self.inodes[ROOT]
        for part in path.split("/"):
            if not part:
                continue
            if not node.is_dir:
                raise fs_error(errno.ENOTDIR)
            ino = node.entries.get(part)
            if ino is None:
                raise fs_error(errno.ENOENT)
            node = self.inodes[ino]
        return node

    def _parent(self, path: str) -> tuple[Inode, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        if not name:
            raise fs_error(errno.EINVAL)
        if len(name.encode()) > 255:
            raise fs_error(errno.ENAMETOOLONG)
        parent = self.lookup(head)
        if not parent.is_dir:
            raise fs_error(errno.ENOTDIR)
        return parent, name

    def durable_path(self, node: Inode) -> Path:
        if node.ino == ROOT:
            return self.backing
        assert node.durable_name is not None
        parent, name = node.durable_name
        return self.durable_path(self.inodes[parent]) / name

    def attributes(self, node: Inode) -> dict[str, Any]:
        kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
        if node.is_dir:
            links = 2 + sum(self.inodes[i].is_dir for i in node.entries.values())
        else:
            links = 1 if node.name is not None else 0
        return {
            "st_ino": node.ino,
            "st_mode": kind | node.mode,
            "st_nlink": links,
            "st_size": node.size,
            "st_blocks": (node.size + 511) // 512,
            "st_blksize": PAGE,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": node.mtime_ns,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.ctime_ns,
        }

    # ------------------------------------------------------------------ namespace

    def create(self, path: str, mode: int, *, is_dir: bool = False) -> Inode:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise fs_error(errno.EEXIST)
        node = self._new(is_dir, stat.S_IMODE(mode))
        node.name = (parent.ino, name)
        parent.entries[name] = node.ino
        parent.mtime_ns = time.time_ns()
        self._journal.append(_Op("mkdir" if is_dir else "create", node.ino, parent.ino, name))
        return node

    def unlink(self, path: str, *, is_dir: bool = False) -> None:
        parent, name = self._parent(path)
        node = self.lookup(path)
        if node.is_dir != is_dir:
            raise fs_error(errno.ENOTDIR if is_dir else errno.EISDIR)
        if node.entries:
            raise fs_error(errno.ENOTEMPTY)
        del parent.entries[name]
        node.name = None
        parent.mtime_ns = time.time_ns()
        self._journal.append(_Op("rmdir" if is_dir else "unlink", node.ino, parent.ino, name))
        self._maybe_forget(node)

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if flags:
            raise fs_error(errno.EINVAL)  # RENAME_NOREPLACE/EXCHANGE: nothing here uses them
        node = self.lookup(old)
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        ancestor: Inode | None = new_parent
        while ancestor is not None:
            if ancestor is node:
                raise fs_error(errno.EINVAL)  # into its own subtree
            ancestor = self.inodes[ancestor.name[0]] if ancestor.name else None
        target_ino = new_parent.entries.get(new_name)
        if target_ino == node.ino:
            return
        if target_ino is not None:
            target = self.inodes[target_ino]
            if target.is_dir != node.is_dir:
                raise fs_error(errno.EISDIR if target.is_dir else errno.ENOTDIR)
            if target.entries:
                raise fs_error(errno.ENOTEMPTY)
            target.name = None
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node.ino
        node.name = (new_parent.ino, new_name)
        old_parent.mtime_ns = new_parent.mtime_ns = time.time_ns()
        self._journal.append(
            _Op("rename", node.ino, old_parent.ino, old_name, new_parent.ino, new_name)
        )
        if target_ino is not None:
            self._maybe_forget(self.inodes[target_ino])

    def opened(self, node: Inode) -> None:
        node.handles += 1

    def released(self, node: Inode) -> None:
        node.handles = max(0, node.handles - 1)
        if node.handles == 0 and node.fd is not None:
            os.close(node.fd)
            node.fd = None
        self._maybe_forget(node)

    def _maybe_forget(self, node: Inode) -> None:
        """Drop what nobody can reach any more: its pages, and a staged copy (its name can
        never become durable: the only way back in would be a hard link)."""
        if node.alive:
            return
        node.dirty.clear()
        node.last_write = None
        if node.staged and node.durable_name is None:
            self._staging_path(node).unlink(missing_ok=True)
            node.staged = False

    # ------------------------------------------------------------------ contents

    def _staging_path(self, node: Inode) -> Path:
        return self.staging / str(node.ino)

    def _base(self, node: Inode, create: bool = False) -> int | None:
        """An open descriptor on the node's durable content, if it has any."""
        if node.fd is not None:
            return node.fd
        if node.durable_name is not None:
            path = self.durable_path(node)
        elif node.staged or create:
            path = self._staging_path(node)
            if not node.staged:
                path.unlink(missing_ok=True)
                node.staged = True
        else:
            return None
        node.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return node.fd

    def read(self, node: Inode, offset: int, size: int) -> bytes:
        self._check()
        return node.read(self._base(node), offset, size)

    def write(self, node: Inode, offset: int, data: bytes) -> int:
        self._check()
        written = node.write(self._base(node), offset, data)
        self.counters["writes"] += 1
        self.counters["written_bytes"] += written
        return written

    def truncate(self, node: Inode, length: int) -> None:
        self._check()
        node.truncate(length)

    # ------------------------------------------------------------------ durability

    def fsync(self, node: Inode) -> None:
        """Write the file's pages and size through to its backing (or staging) file."""
        self._check()
        self.counters["fsync"] += 1
        if node.is_dir:
            self.fsyncdir(node)
            return
        if node.synced:
            return
        fd = self._base(node, create=True)
        assert fd is not None
        node.write_through(fd, sync=self.sync_backing)

    def fsyncdir(self, node: Inode) -> None:
        """Make the journal durable up to the last change to this directory's entries."""
        self._check()
        self.counters["fsyncdir"] += 1
        last = max((i for i, op in enumerate(self._journal) if op.touches(node.ino)), default=-1)
        if last < 0:
            return
        done, self._journal = self._journal[: last + 1], self._journal[last + 1 :]
        touched: set[int] = set()
        for op in done:
            self._apply(op)
            touched.update((op.parent, op.new_parent or op.parent))
        if self.sync_backing:
            for ino in touched:
                directory = self.inodes[ino]
                if directory.ino == ROOT or directory.durable_name is not None:
                    _fsync_path(self.durable_path(directory))

    def _apply(self, op: _Op) -> None:
        node = self.inodes[op.ino]
        parent = self.inodes[op.parent]
        if op.kind in ("create", "mkdir"):
            path = self.durable_path(parent) / op.name
            if op.kind == "mkdir":
                path.mkdir(mode=node.mode)
            elif node.staged:
                os.replace(self._staging_path(node), path)
                node.staged = False
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, node.mode))
            node.durable_name = (parent.ino, op.name)
            parent.durable_entries[op.name] = node.ino
        elif op.kind in ("unlink", "rmdir"):
            self._drop_durable_name(node)
        else:
            new_parent = self.inodes[op.new_parent]
            replaced = new_parent.durable_entries.get(op.new_name)
            if replaced is not None and replaced != node.ino:
                self._drop_durable_name(self.inodes[replaced])
            os.replace(self.durable_path(node), self.durable_path(new_parent) / op.new_name)
            del parent.durable_entries[op.name]
            new_parent.durable_entries[op.new_name] = node.ino
            node.durable_name = (new_parent.ino, op.new_name)

    def _drop_durable_name(self, node: Inode) -> None:
        """The node's durable name goes; its content moves to staging if still in use."""
        path = self.durable_path(node)
        assert node.durable_name is not None
        parent, name = node.durable_name
        if node.is_dir:
            path.rmdir()
        elif node.alive:
            os.replace(path, self._staging_path(node))
            node.staged = True
        else:
            path.unlink()
            if node.fd is not None:
                os.close(node.fd)
                node.fd = None
        del self.inodes[parent].durable_entries[name]
        node.durable_name = None

    # ------------------------------------------------------------------ power

    def unsynced(self) -> dict[str, int]:
        files = [n for n in self.inodes.values() if not n.is_dir and n.alive]
        return {
            "unsynced_files": sum(1 for n in files if n.unsynced_writes),
            "unsynced_writes": sum(n.unsynced_writes for n in files),
            "unsynced_bytes": sum(n.unsynced_bytes for n in files),
            "unsynced_entries": len(self._journal),
        }

    def cut(self, rng: random.Random | None = None) -> dict[str, Any]:
        """Power cut: forget everything volatile. With ``rng``, first write a random,
        non-empty, proper prefix of each durably named file's last unsynced write."""
        self._check()
        report: dict[str, Any] = self.unsynced() | {"torn": []}
        if rng is not None:
            for node in sorted(self.inodes.values(), key=lambda n: n.ino):
                if node.is_dir or node.durable_name is None or node.last_write is None:
                    continue
                offset, data = node.last_write
                if len(data) < 2:
                    continue
                keep = rng.randint(1, len(data) - 1)
                fd = self._base(node)
                assert fd is not None
                os.pwrite(fd, data[:keep], offset)
                os.fsync(fd)
                path = str(self.durable_path(node).relative_to(self.backing))
                report["torn"].append(
                    {"file": path, "offset": offset, "kept": keep, "of": len(data)}
                )
        for node in self.inodes.values():
            if node.fd is not None:
                os.close(node.fd)
                node.fd = None
        shutil.rmtree(self.staging, ignore_errors=True)
        self.dead = True
        return report


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
