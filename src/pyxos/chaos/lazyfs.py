"""The lazy file system: a FUSE mount that loses, on command, every write not fsynced.

``SIGKILL`` keeps the kernel's page cache, so a node that never calls ``fsync`` survives
any number of process crashes. This mount serves :class:`~pyxos.chaos.lazy_state.
LazyState` (read its docstring for the rules): writes stay in this process's memory until
``fsync``/``fdatasync`` of the file, directory entries until the directory is synced; a
*cut* throws the rest away, as a power failure does. It is the idea of LazyFS, which
etcd's robustness tests use, kept small and in Python.

Run as its own process, one per mount (``python -m pyxos.chaos.lazyfs BACKING MOUNT
--control NAME``); :class:`pyxos.chaos.power.LazyMount` starts it, cuts its power and
mounts it again. The control channel is an abstract Unix socket taking one JSON line:
``{"op": "cut", "tear_seed": 7}`` (reply, then exit at once: the power is gone),
``{"op": "stats"}``.

The FUSE binding is mfusepy (ctypes over libfuse 3's high-level API, no compiler needed).
File handles are ours, so operations on an open file never depend on its path; libfuse is
told to pass no paths for them (``nullpath_ok``) and to forget unlinked files at once
(``hard_remove``). The kernel's page cache stays on (it is what every engine's memory
maps go through): writes are sent through to this process before ``write`` returns, and
dirty pages of a shared map arrive by write-back, or at ``msync``/``fsync``, which the
kernel turns into an ``fsync`` here, so memory-mapped writers are covered too. Locks
(``flock``, ``fcntl``) are left to the kernel, which keeps them per mount.
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import logging
import os
import random
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pyxos.chaos.lazy_inode import Inode, fs_error
from pyxos.chaos.lazy_state import LazyState

log = logging.getLogger("pyxos.lazyfs")
F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: LazyOperations, *args: Any) -> Any:
        with self._mutex:
            return method(self, *args)

    return wrapper  # type: ignore[return-value]


class LazyOperations:
    """mfusepy's callbacks over one :class:`LazyState`; every call under one lock."""

    use_ns = True

    def __init__(self, state: LazyState) -> None:
        self.state = state
        self._mutex = threading.Lock()
        self._handles: dict[int, tuple[Inode, int]] = {}
        self._next_fh = 1

    def init_with_config(self, conn: Any, config: Any) -> None:
        if config is not None:
            config.use_ino = 1  # our inode numbers: SQLite keys its locks by them
            config.hard_remove = 1
            config.nullpath_ok = 1

    def _node(self, path: str | None, fh: int | None) -> Inode:
        if fh:
            try:
                return self._handles[fh][0]
            except KeyError:
                raise fs_error(errno.EBADF) from None
        if path is None:
            raise fs_error(errno.EBADF)
        return self.state.lookup(path)

    def _open(self, node: Inode, flags: int) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        self._handles[fh] = (node, flags)
        self.state.opened(node)
        return fh

    # ------------------------------------------------------------------ metadata

    @_locked
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        return self.state.attributes(self._node(path, fh))

    @_locked
    def access(self, path: str, amode: int) -> int:
        self.state.lookup(path)
        return 0

    @_locked
    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.state.backing)
        names = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files")
        return {name: getattr(st, name) for name in (*names, "f_ffree", "f_namemax")}

    @_locked
    def chmod(self, path: str | None, mode: int) -> int:
        if path is not None:
            self.state.lookup(path).mode = mode & 0o7777
        return 0

    @_locked
    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0  # one owner: whoever runs the mount

    @_locked
    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        if path is not None:
            node = self.state.lookup(path)
            if times is not None:
                node.mtime_ns = times[1]
        return 0

    # ------------------------------------------------------------------ directories

    @_locked
    def opendir(self, path: str) -> int:
        node = self.state.lookup(path)
        if not node.is_dir:
            raise fs_error(errno.ENOTDIR)
        return self._open(node, os.O_RDONLY)

    @_locked
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        node = self._node(path, fh)
        out = [(".", {"st_ino": node.ino, "st_mode": 0o40755}, 0)]
        out.append(("..", {"st_mode": 0o40755}, 0))
        for name, ino in node.entries.items():
            attrs = self.state.attributes(self.state.inodes[ino])
            out.append((name, {"st_ino": ino, "st_mode": attrs["st_mode"]}, 0))
        return out

    @_locked
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self.state.fsyncdir(self._node(path, fh))
        return 0

    @_locked
    def mkdir(self, path: str, mode: int) -> int:
        self.state.create(path, mode, is_dir=True)
        return 0

    @_locked
    def rmdir(self, path: str) -> int:
        self.state.unlink(path, is_dir=True)
        return 0

    @_locked
    def unlink(self, path: str) -> int:
        self.state.unlink(path)
        return 0

    @_locked
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        self.state.rename(old, new, flags)
        return 0

    # ------------------------------------------------------------------ files

    @_locked
    def create(self, path: str, mode: int, flags: int) -> int:
        return self._open(self.state.create(path, mode), flags)

    @_locked
    def open(self, path: str, flags: int) -> int:
        node = self.state.lookup(path)
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            self.state.truncate(node, 0)  # FUSE_CAP_ATOMIC_O_TRUNC: it comes with open
        return self._open(node, flags)

    @_locked
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.state.read(self._node(path, fh), offset, size)

    @_locked
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        node, flags = self._handles.get(fh, (None, 0))
        if node is None:
            raise fs_error(errno.EBADF)
        written = self.state.write(node, offset, data)
        if flags & os.O_DSYNC:  # O_SYNC includes it; LMDB writes its meta pages so
            self.state.fsync(node)
        return written

    @_locked
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self.state.truncate(self._node(path, fh), length)
        return 0

    @_locked
    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close() promises nothing about durability

    @_locked
    def release(self, path: str | None, fh: int) -> int:
        entry = self._handles.pop(fh, None)
        if entry is not None:
            self.state.released(entry[0])
        return 0

    releasedir = release  # a directory's handle is closed as a file's is

    @_locked
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self.state.fsync(self._node(path, fh))
        return 0

    # ------------------------------------------------------------------ control

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._mutex:
            op = request.get("op")
            if op == "stats":
                return {"ok": True} | self.state.unsynced() | self.state.counters
            if op == "cut":
                seed = request.get("tear_seed")
                rng = random.Random(seed) if seed is not None else None
                return {"ok": True} | self.state.cut(rng)
            return {"ok": False, "error": f"unknown op {op!r}"}


def _fuse_class() -> type:
    import mfusepy

    class LazyFUSE(mfusepy.FUSE):  # type: ignore[misc]
        """mfusepy passes neither the file handle to truncate nor the flags to rename."""

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            name = None if path is None else path.decode(self.encoding, self.errors)
            result: int = self.operations.truncate(name, length, fh)
            return result

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            result: int = self.operations.rename(
                old.decode(self.encoding, self.errors),
                new.decode(self.encoding, self.errors),
                flags,
            )
            return result

    return LazyFUSE


def _serve_control(ops: LazyOperations, name: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                line = conn.makefile("rb").readline()
                request = json.loads(line)
                reply = ops.control(request)
            except Exception as exc:
                log.exception("control request failed")
                reply = {"ok": False, "error": repr(exc)}
            conn.sendall(json.dumps(reply).encode() + b"\n")
            if reply.get("ok") and request.get("op") == "cut":
                log.info("power cut: %s", reply)
                os._exit(0)  # no flushing, no unmount: the power is gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyxos.chaos.lazyfs", description=__doc__)
    parser.add_argument("backing", type=Path, help="the durable state: a directory on disk")
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--control", required=True, help="abstract Unix socket name")
    parser.add_argument("--staging", type=Path, help="synced files not yet named durably")
    parser.add_argument(
        "--no-backing-sync",
        action="store_true",
        help="do not fsync the backing files (faster; the real disk's sync cost is lost)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lazyfs %(levelname)s %(message)s")
    state = LazyState(args.backing, args.staging, sync_backing=not args.no_backing_sync)
    ops = LazyOperations(state)
    threading.Thread(target=_serve_control, args=(ops, args.control), daemon=True).start()
    fuse = _fuse_class()
    fuse(ops, str(args.mountpoint), foreground=True, nothreads=True, fsname="pyxos-lazyfs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
