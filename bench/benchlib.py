"""Helpers shared by bench/compare.py, bench/scaling.py and bench/memory_snapshot.py.

- the machine's description (CPU, cores, RAM, kernel, file system of the data dir, load);
- installing what a comparison needs when it is missing (apt-get, pip into this venv);
- accounting for CPU used by processes that are *not* ours during a measurement, so a
  result taken while something else was busy on the machine says so;
- running ``pyxos bench`` (``python -m pyxos.benchmark``) as its own process and reading
  its JSON line;
- a pyxos LocalCluster with a known leader, and free port ranges.

Every server these scripts start listens on 127.0.0.1 and is stopped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PY = sys.executable


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                if str(path.resolve()).startswith(point) and len(point) > len(best):
                    best, kind = point, f"{fields[2]} ({fields[0]} on {point})"
    except OSError:
        pass
    return kind


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(cmd: Sequence[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    import hashlib

    import pyxos

    dirty = [line[3:] for line in git("status", "--porcelain", "src").splitlines() if line]
    package = Path(pyxos.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return {
        "repo_commit": git("rev-parse", "HEAD").strip(),
        "repo_dirty_src_files": dirty,
        "measured_source": str(package),
        "measured_source_sha256": digest.hexdigest()[:16],
        "measured_source_note": os.environ.get("PYXOS_BENCH_SOURCE_NOTE", ""),
    }


def machine(data_dir: Path) -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "?",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    pysyncobj = None
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        pysyncobj = version("pysyncobj")
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _read("/etc/os-release").split("PRETTY_NAME=", 1)[-1].split("\n", 1)[0].strip('"'),
        "python": platform.python_version(),
        "data_dir_fs": filesystem_of(data_dir),
        "loadavg_at_start": _read("/proc/loadavg").split()[:3],
        "versions": {
            "redis-server": _version(["redis-server", "--version"]),
            "etcd": _version(["etcd", "--version"]),
            "wrk": _version(["wrk", "--version"]),
            "pysyncobj": pysyncobj,
        },
        "pyxos_git": git_state(),
    }


# --------------------------------------------------------------------------- installing


def apt_install(packages: Sequence[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(packages)} with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages],
        check=True,
        env=env,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )


def ensure_commands(wanted: dict[str, str]) -> None:
    """``{command: debian package}``: apt-get install the packages of missing commands."""
    missing = sorted({pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None})
    if missing:
        apt_install(missing)
    still = [cmd for cmd in wanted if shutil.which(cmd) is None]
    if still:
        raise SystemExit(f"could not install {', '.join(still)}")


def ensure_pip(module: str, requirement: str) -> None:
    try:
        __import__(module)
    except ImportError:
        log(f"installing {requirement} into {sys.prefix} with pip")
        subprocess.run([PY, "-m", "pip", "install", "-q", requirement], check=True, timeout=600)


# --------------------------------------------------------------------------- CPU accounting


def _proc_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (ppid, cpu seconds, command) for every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        right = stat.rsplit(")", 1)
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = right[1].split()
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, name)
    return out


def _ours(table: dict[int, tuple[int, float, str]]) -> set[int]:
    me = os.getpid()
    ours = {me}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return ours


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = _read("/proc/stat").splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_reaped_s() -> float:
    """CPU of this process plus every descendant it (transitively) waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignCpu:
    """CPU that something other than this script's process tree used between start and stop.

    Machine-wide busy time (/proc/stat) minus ours, where ours is this process, its reaped
    descendants (``os.times``) and the descendants still alive (/proc): processes that
    start and exit during the run are counted too, on either side.
    """

    def __init__(self) -> None:
        self.before = _proc_table()
        self.ours_before = _ours(self.before)
        self.busy0 = _machine_busy_s()
        self.own0 = _own_reaped_s()
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        after = _proc_table()
        busy = _machine_busy_s() - self.busy0
        wall = max(1e-9, time.monotonic() - self.started)
        me = os.getpid()
        ours_after = _ours(after) - {me}
        own = _own_reaped_s() - self.own0
        # Descendants alive now: what they used since start (or since they were born).
        for pid in ours_after:
            own += after[pid][1] - (self.before[pid][1] if pid in self.before else 0.0)
        # Descendants alive at the start that were reaped since: os.times counts their
        # whole life, so take off what they had used before the start.
        for pid in self.ours_before - {me} - ours_after:
            own -= self.before[pid][1]
        foreign: dict[str, float] = {}
        for pid, (_, cpu, name) in after.items():
            if pid in ours_after or pid == me:
                continue
            used = cpu - self.before.get(pid, (0, 0.0, ""))[1]
            if used > 0:
                foreign[name] = foreign.get(name, 0.0) + used
        top = sorted(foreign.items(), key=lambda kv: -kv[1])[:4]
        return {
            "foreign_cpu_cores": round(max(0.0, busy - own) / wall, 2),
            "foreign_top": {k: round(v / wall, 2) for k, v in top},
            "our_cpu_cores": round(own / wall, 2),
            "machine_busy_cores": round(busy / wall, 2),
            "loadavg": _read("/proc/loadavg").split()[:3],
        }


def wait_quiet(max_foreign: float = 0.3, timeout: float = 0.0) -> float:
    """Wait (up to ``timeout`` s) until other processes use under ``max_foreign`` cores."""
    deadline = time.monotonic() + timeout
    while True:
        probe = ForeignCpu()
        time.sleep(1.0)
        busy = probe.stop()["foreign_cpu_cores"]
        if busy <= max_foreign or time.monotonic() >= deadline:
            return float(busy)
        log(f"machine busy ({busy} cores used by other processes); waiting")


# --------------------------------------------------------------------------- ports


def free_port_block(count: int, start: int = 21000, stop: int = 60000, step: int = 53) -> int:
    """A base port such that ``base .. base+count-1`` can all be bound on 127.0.0.1."""
    offset = (os.getpid() * 7919) % (stop - start - count)
    for base in range(start + offset, stop - count, step):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# --------------------------------------------------------------------------- pyxos


def pyxos_bench(
    endpoints: str,
    *,
    clients: int,
    duration: float,
    value_size: int = 100,
    ratio: str = "0:1",
    pipeline: int = 1,
    keys: int = 10_000,
    warmup: float = 1.0,
    rate: float = 0.0,
    workers: int = 1,
    leader: bool = False,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``python -m pyxos.benchmark`` in its own process; its JSON plus foreign CPU."""
    cmd = [
        PY, "-m", "pyxos.benchmark",
        "--endpoints", endpoints,
        "--clients", str(clients),
        "--duration", str(duration),
        "--value-size", str(value_size),
        "--ratio", ratio,
        "--pipeline", str(pipeline),
        "--keys", str(keys),
        "--warmup", str(warmup),
        "--workers", str(workers),
        "--json", "--no-progress",
        *(["--rate", str(rate)] if rate else []),
        *(["--leader"] if leader else []),
        *extra,
    ]  # fmt: skip
    cpu = ForeignCpu()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + warmup + 180, cwd=REPO, check=False
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(
            f"pyxos bench failed ({proc.returncode}): {proc.stderr[-2000:]}"
        ) from None
    if "error" in result:
        raise RuntimeError(f"pyxos bench: {result['error']}")
    result["machine_load"] = cpu.stop()
    result["command"] = " ".join(cmd[1:]).replace(str(REPO) + "/", "")
    return result


@contextlib.contextmanager
def pyxos_cluster(
    nodes: int, data_dir: Path, extra_args: Sequence[str] = (), tls_dir: Path | None = None
) -> Iterator[Any]:
    """A running LocalCluster with an elected leader; stopped (SIGTERM, then SIGKILL) after.

    ``tls_dir``: files of ``pyxos certs``; mutual TLS between nodes and a TLS client port
    next to the plain one (``LocalCluster.tls_port``)."""
    from pyxos.launch.local_cluster import LocalCluster, find_base_port

    cluster = LocalCluster(
        nodes, find_base_port(nodes), data_dir, extra_args=list(extra_args), tls_dir=tls_dir
    )
    cluster.start()
    try:
        try:
            cluster.wait_ready(timeout=60)
            pyxos_leader(cluster)
        except (TimeoutError, RuntimeError) as exc:
            tail = cluster.log_text(1)[-3000:]
            raise RuntimeError(f"cluster did not start: {exc}\nnode 1 log:\n{tail}") from exc
        yield cluster
    finally:
        cluster.close()


def pyxos_leader(cluster: Any, timeout: float = 30.0) -> int:
    """The node every running node names as leader."""
    from pyxos.client.status import fetch_status

    deadline = time.monotonic() + timeout
    eps = ",".join(f"127.0.0.1:{cluster.client_port(k)}" for k in cluster.ids)
    while True:
        rows = [r for r in fetch_status(eps) if "error" not in r]
        leaders = {r["leader_id"] for r in rows}
        if rows and len(leaders) == 1 and None not in leaders:
            (leader,) = leaders
            if leader in cluster.ids:
                return int(leader)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no agreed leader: {rows}")
        time.sleep(0.1)


def endpoints_of(cluster: Any, only: int | None = None) -> str:
    ids = [only] if only is not None else cluster.ids
    return ",".join(f"127.0.0.1:{cluster.client_port(k)}" for k in ids)


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak), RssAnon and RssFile (mmapped files: LMDB) in KiB."""
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    log(f"wrote {path.relative_to(REPO)}")
    return path


def today() -> str:
    return dt.date.today().isoformat()


def redis_benchmark(
    port: int,
    clients: int,
    requests: int,
    value_size: int = 100,
    keys: int = 10_000,
    pipeline: int = 1,
    timeout: float = 300.0,
    extra: Sequence[str] = (),
    test: str = "set",
) -> dict[str, Any]:
    """``redis-benchmark -t set`` (or ``-t get``) with random keys; rps and latency
    percentiles (ms).

    ``extra``: more redis-benchmark flags (``--tls --cacert ...``)."""
    cmd = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
        "-c", str(clients), "-n", str(requests), "-d", str(value_size),
        "-r", str(keys), "-P", str(pipeline), "--csv", *extra,
    ]  # fmt: skip
    cpu = ForeignCpu()
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.monotonic() - started
    rows = [line for line in proc.stdout.splitlines() if line.startswith(f'"{test.upper()}"')]
    if not rows:
        raise RuntimeError(f"redis-benchmark failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    head = [h.strip('"') for h in proc.stdout.splitlines()[0].split(",")]
    vals = [v.strip('"') for v in rows[-1].split(",")]
    rec = dict(zip(head, vals, strict=False))
    return {
        "ops_per_s": float(rec["rps"]),
        "p50_ms": float(rec["p50_latency_ms"]),
        "p99_ms": float(rec["p99_latency_ms"]),
        "p999_ms": None,
        "max_ms": float(rec["max_latency_ms"]),
        "mean_ms": float(rec["avg_latency_ms"]),
        "ops": requests,
        "wall_s": round(wall, 2),
        "errors": 0,
        "command": " ".join(cmd),
        "machine_load": cpu.stop(),
    }
