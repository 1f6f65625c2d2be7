"""Power cuts for real processes: each node's data dir on a lazy mount of its own.

:class:`LazyMount` runs one :mod:`pyxos.chaos.lazyfs` process over a backing directory,
and :meth:`LazyMount.cut` is the power failure: the process keeps only what was fsynced
(optionally tearing each file's last unsynced write), exits, and the mount is detached;
:meth:`LazyMount.start` then mounts the backing directory again, as a machine boots from
its disk. The ``power`` nemesis kills the node first (SIGKILL), so nothing of it survives
in memory either. Root only, with ``/dev/fuse`` and libfuse 3 (:func:`unavailable_reason`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any


@functools.cache
def unavailable_reason() -> str | None:
    """Why lazy mounts cannot be made here, or ``None`` when they can (checked by
    mounting, writing, cutting and reading back once per process)."""
    if os.geteuid() != 0:
        return "needs root (to mount FUSE file systems)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"needs /dev/fuse: {exc.strerror}"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, AttributeError) as exc:
        return f"needs libfuse 3 (apt-get install -y fuse3): {exc}"
    if shutil.which("umount") is None:
        return "needs umount"
    with tempfile.TemporaryDirectory(prefix="pyxos-lazyfs-probe-") as tmp:
        mount = LazyMount(Path(tmp) / "disk", Path(tmp) / "mnt", log_path=Path(tmp) / "log")
        try:
            mount.start(timeout=10)
            (mount.mountpoint / "probe").write_bytes(b"probe")
            mount.cut()
            if (mount.backing / "probe").exists():
                return "a probe mount kept an unsynced file: the lazy file system is broken"
        except (OSError, RuntimeError, TimeoutError) as exc:
            log = (Path(tmp) / "log").read_text(errors="replace")[-500:]
            return f"a probe mount failed: {exc} {log}".strip()
        finally:
            mount.stop()
    return None


class LazyMount:
    """One lazy mount of ``backing`` at ``mountpoint``; nothing runs until :meth:`start`."""

    def __init__(
        self,
        backing: Path,
        mountpoint: Path,
        *,
        log_path: Path | None = None,
        backing_sync: bool = True,
    ) -> None:
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.log_path = log_path
        self.backing_sync = backing_sync
        self.control = f"pyxos-lazyfs-{os.getpid()}-{id(self):x}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.cuts: list[dict[str, Any]] = []

    @property
    def mounted(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Mount (again) and wait until the file system answers."""
        self.spawn()
        self.wait_mounted(timeout)

    def spawn(self) -> None:
        """Start mounting; :meth:`wait_mounted` waits for it (several mounts at once)."""
        if self.mounted:
            return
        self._detach()  # a mount left behind by a process that died
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = (
                open(self.log_path, "ab")  # noqa: SIM115 (kept open across remounts)
                if self.log_path
                else open(os.devnull, "wb")  # noqa: SIM115
            )
        command = [
            sys.executable,
            "-m",
            "pyxos.chaos.lazyfs",
            str(self.backing),
            str(self.mountpoint),
            "--control",
            self.control,
        ]
        if not self.backing_sync:
            command.append("--no-backing-sync")
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_mounted(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            raise RuntimeError(f"{self.mountpoint}: nothing is mounting")
        deadline = time.monotonic() + timeout
        while not (os.path.ismount(self.mountpoint) and self._answers()):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the lazy file system at {self.mountpoint} exited with "
                    f"{self.proc.returncode}; see {self.log_path or 'its log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the lazy file system at {self.mountpoint} did not mount")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            self.request({"op": "stats"}, timeout=1.0)
        except OSError:
            return False
        return True

    def request(self, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect("\0" + self.control)
            sock.sendall(json.dumps(message).encode() + b"\n")
            line = sock.makefile("rb").readline()
        if not line:
            raise OSError(f"the lazy file system at {self.mountpoint} closed the connection")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"lazy file system: {reply.get('error')}")
        return reply

    def stats(self) -> dict[str, Any]:
        """Unsynced files, writes, bytes and directory entries, and operation counters."""
        return self.request({"op": "stats"})

    def cut(self, tear_seed: int | None = None) -> dict[str, Any]:
        """Cut the power: every unsynced byte and entry is lost (with ``tear_seed``, each
        file's last unsynced write keeps a random prefix). Whoever had files open on the
        mount must be dead already. Returns what was lost. :meth:`start` mounts again."""
        if not self.mounted:
            raise RuntimeError(f"{self.mountpoint} is not mounted")
        assert self.proc is not None
        report = self.request({"op": "cut", "tear_seed": tear_seed})
        self._reap()
        report.pop("ok", None)
        self.cuts.append(report)
        return report

    def _reap(self) -> None:
        """Wait for the file system process to end (killing it after 10 s), then detach."""
        assert self.proc is not None
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._detach()

    def stop(self) -> None:
        """Unmount (unsynced data is lost, as at a cut) and stop the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # libfuse unmounts on SIGTERM
            self._reap()
        else:
            self._detach()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _detach(self) -> None:
        if os.path.ismount(self.mountpoint) or _dead_mount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)


def _dead_mount(path: Path) -> bool:
    """A FUSE mount whose process is gone answers ENOTCONN to everything."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == 107  # ENOTCONN
    return False


class PowerSupply:
    """The lazy mounts of a cluster's nodes: ``data/node<k>`` over ``data/node<k>.disk``."""

    def __init__(self, data_dir: Path, ids: list[int], *, backing_sync: bool = True) -> None:
        self.mounts = {
            k: LazyMount(
                data_dir / f"node{k}.disk",
                data_dir / f"node{k}",
                log_path=data_dir / f"lazyfs{k}.log",
                backing_sync=backing_sync,
            )
            for k in ids
        }

    def start(self, nodes: list[int] | None = None) -> None:
        """Mount the disks of ``nodes`` (default: all), all at once."""
        mounts = [self.mounts[k] for k in (nodes or self.mounts)]
        for mount in mounts:
            mount.spawn()
        for mount in mounts:
            mount.wait_mounted()

    def cut(self, nodes: list[int], tear_seeds: list[int | None]) -> list[dict[str, Any]]:
        """Cut the power of ``nodes`` (which must be dead), then mount their disks again."""
        reports = [self.mounts[k].cut(seed) for k, seed in zip(nodes, tear_seeds, strict=True)]
        self.start(nodes)
        return reports

    def close(self) -> None:
        for mount in self.mounts.values():
            mount.stop()
