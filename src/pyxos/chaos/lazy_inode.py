"""One file or directory of the lazy file system: its names, and its unsynced pages.

A file's volatile content is its durable content (a backing or staging file, read
through a descriptor the caller passes) overlaid with dirty 4 KiB pages held here, cut
to ``size``. Only the first ``visible_base`` bytes of the durable content still show
through: a truncate hides what lies beyond it, even if the file grows again before the
next sync. :meth:`Inode.write_through` is the sync: pages and size go to the descriptor,
and the pages are dropped.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field

PAGE = 4096


def fs_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass(eq=False, slots=True)
class Inode:
    """A file or directory: where it is (volatile and durable) and its unsynced bytes."""

    ino: int
    is_dir: bool
    mode: int
    name: tuple[int, str] | None = None
    """(parent inode, name) in the volatile tree; ``None`` once unlinked."""
    durable_name: tuple[int, str] | None = None
    """(parent inode, name) in the backing directory; ``None`` if not durable there."""
    entries: dict[str, int] = field(default_factory=dict)
    durable_entries: dict[str, int] = field(default_factory=dict)
    handles: int = 0
    size: int = 0
    durable_size: int = 0
    visible_base: int = 0
    """How much of the durable content a reader still sees (less after a truncate)."""
    dirty: dict[int, bytearray] = field(default_factory=dict)
    last_write: tuple[int, bytes] | None = None
    unsynced_writes: int = 0
    unsynced_bytes: int = 0
    staged: bool = False
    """Its durable content is in a staging file: synced, but with no durable name."""
    fd: int | None = None
    mtime_ns: int = field(default_factory=time.time_ns)
    ctime_ns: int = field(default_factory=time.time_ns)

    @property
    def alive(self) -> bool:
        """Still reachable: it has a name, or a process holds it open."""
        return self.name is not None or self.handles > 0

    @property
    def synced(self) -> bool:
        return not self.dirty and self.visible_base == self.durable_size == self.size

    def _base_bytes(self, fd: int | None, start: int, length: int) -> bytes:
        length = min(length, self.visible_base - start)
        if length <= 0 or fd is None:
            return b""
        return os.pread(fd, length, start)

    def _page(self, fd: int | None, index: int) -> bytearray:
        page = self.dirty.get(index)
        if page is None:
            page = bytearray(PAGE)
            base = self._base_bytes(fd, index * PAGE, PAGE)
            page[: len(base)] = base
            self.dirty[index] = page
        return page

    def read(self, fd: int | None, offset: int, size: int) -> bytes:
        if self.is_dir:
            raise fs_error(errno.EISDIR)
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        if not self.dirty and self.visible_base == self.size:
            return self._base_bytes(fd, offset, end - offset)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, PAGE)
            n = min(PAGE - within, end - pos)
            page = self.dirty.get(index)
            if page is not None:
                out += page[within : within + n]
            else:
                chunk = self._base_bytes(fd, pos, n)
                out += chunk
                out += bytes(n - len(chunk))
            pos += n
        return bytes(out)

    def write(self, fd: int | None, offset: int, data: bytes) -> int:
        if self.is_dir:
            raise fs_error(errno.EISDIR)
        view = memoryview(data)
        pos, end = offset, offset + len(data)
        while pos < end:
            index, within = divmod(pos, PAGE)
            n = min(PAGE - within, end - pos)
            self._page(fd, index)[within : within + n] = view[pos - offset : pos - offset + n]
            pos += n
        self.size = max(self.size, end)
        self.last_write = (offset, bytes(data))
        self.unsynced_writes += 1
        self.unsynced_bytes += len(data)
        self.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, length: int) -> None:
        if self.is_dir:
            raise fs_error(errno.EISDIR)
        if length < 0:
            raise fs_error(errno.EINVAL)
        if length < self.size:
            for index in [i for i in self.dirty if i * PAGE >= length]:
                del self.dirty[index]
            edge = self.dirty.get(length // PAGE)
            if edge is not None:
                edge[length % PAGE :] = bytes(PAGE - length % PAGE)
            self.visible_base = min(self.visible_base, length)
        self.size = length
        self.unsynced_writes += 1
        self.mtime_ns = time.time_ns()

    def write_through(self, fd: int, *, sync: bool) -> None:
        """Make the volatile content durable in ``fd``'s file (and fsync it if ``sync``)."""
        if self.visible_base < self.durable_size:
            os.ftruncate(fd, self.visible_base)
        for index in sorted(self.dirty):
            start = index * PAGE
            if start < self.size:
                os.pwrite(fd, self.dirty[index][: min(PAGE, self.size - start)], start)
        os.ftruncate(fd, self.size)
        if sync:
            os.fsync(fd)
        self.dirty.clear()
        self.durable_size = self.visible_base = self.size
        self.last_write = None
        self.unsynced_writes = self.unsynced_bytes = 0
