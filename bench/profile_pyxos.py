"""Where a pyxos node spends its time under load: py-spy on the leader and a follower.

    .venv/bin/python bench/profile_pyxos.py [--duration 15] [--clients 64]

Starts a 3-node cluster, runs ``pyxos bench`` (SET, 100-byte values, 64 clients, at the
leader) and meanwhile samples the leader and one follower with ``py-spy record``
(``--nonblocking``, so the nodes are not paused; installed into this venv when missing).
Reports, per node: CPU cores used (from /proc), the share of samples per thread, the
functions with the most self time, and the share per subsystem (each sample charged to the
innermost pyxos module on its stack, or to the library at its leaf when no pyxos frame is
there), and the CPU each thread of the node used per command applied (from
/proc/<pid>/task, over the sampled window). Writes ``bench/results/profile-<date>[-<tag>].json``,
the raw folded stacks (``...-leader.folded``, ``...-follower.folded``, loadable in speedscope or
flamegraph.pl) and their flame graphs (``.svg``, by ``bench/flamegraph.py``). ``--tag`` names a
run (``before-x``, ``after-x``) so the two sides of an A/B sit next to each other.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    PY,
    REPO,
    RESULTS,
    endpoints_of,
    log,
    machine,
    pyxos_cluster,
    pyxos_leader,
    today,
    write_result,
)
from flamegraph import render

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")

SUBSYSTEMS = [
    ("pyxos/core/", "core (protocol state machine)"),
    ("pyxos/transport/", "transport (peer links, framing)"),
    ("pyxos/storage/", "storage (SQLite or LMDB, fsync)"),
    ("pyxos/resp/", "RESP parsing/encoding"),
    ("pyxos/server/redis_server", "client connections (redis_server)"),
    ("pyxos/kv/", "KV state machine"),
    ("pyxos/runtime/", "runtime (Node driver)"),
    ("pyxos/", "other pyxos"),
]


def scrape(port: int) -> dict[str, float]:
    """The node's Prometheus counters (unlabelled series only) from its admin port."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("pyxos_") and "{" not in line:
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def metric_rates(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, Any]:
    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    syncs = d("pyxos_fsync_seconds_count")
    batches = d("pyxos_batch_entries_count")
    slots = d("pyxos_slots_applied_total")
    return {
        "synced_writes_per_s": round(syncs / wall, 1),
        "mean_synced_write_ms": round(1000 * d("pyxos_fsync_seconds_sum") / syncs, 3)
        if syncs
        else None,
        "io_thread_busy_syncing_pct": round(100 * d("pyxos_fsync_seconds_sum") / wall, 1),
        "batches_per_s": round(batches / wall, 1),
        "mean_entries_per_batch": round(d("pyxos_batch_entries_sum") / batches, 2)
        if batches
        else None,
        "slots_applied_per_s": round(slots / wall, 1),
        "commands_per_slot": round(d("pyxos_commands_applied_total") / slots, 2) if slots else None,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of ``pid``, keyed by thread name (``name#tid``)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[f"{comm}#{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def steal_seconds() -> float:
    """CPU time the hypervisor gave to others while this VM wanted it (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def thread_names(folded: Path) -> dict[str, str]:
    """Thread id -> Python thread name, from py-spy's ``thread (TID): NAME`` frames."""
    names = {}
    for line in folded.read_text(errors="replace").splitlines():
        m = re.match(r"thread \((\d+)\): ([^;]+);", line)
        if m:
            names[m.group(1)] = m.group(2).strip()
    return names


def per_command_us(
    before: dict[str, float], after: dict[str, float], commands: float, names: dict[str, str]
) -> dict[str, float]:
    """Microseconds of CPU per applied command, per thread that used any."""
    out: dict[str, float] = {}
    for name, t in after.items():
        tid = name.split("#")[1]
        used, thread = t - before.get(name, 0.0), names.get(tid, name)
        if used > 0 and commands > 0:
            out[thread] = round(out.get(thread, 0.0) + 1e6 * used / commands, 1)
    out["total"] = round(sum(out.values()), 1)
    return out


def classify(stack: list[str]) -> str:
    for frame in reversed(stack):
        m = _FRAME.match(frame)
        path = m.group("file") if m else frame
        for key, name in SUBSYSTEMS:
            if key in path:
                return name
    leaf = stack[-1] if stack else "?"
    m = _FRAME.match(leaf)
    path = m.group("file") if m else leaf
    for lib in ("asyncio", "uvloop", "lmdb", "msgspec", "hiredis", "prometheus_client",
                "threading", "concurrent", "logging", "selectors", "socket"):  # fmt: skip
        if lib in path:
            return f"library: {lib}"
    return f"other: {Path(path).name}"


def summarize(folded: Path) -> dict[str, Any]:
    threads: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    subsystem: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        frames = stack_text.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        stack = [f for f in frames if not f.startswith(("thread", "process"))]
        total += count
        threads[thread] += count
        leaf = stack[-1] if stack else "?"
        m = _FRAME.match(leaf)
        name = f"{m.group('func')} ({Path(m.group('file')).name})" if m else leaf
        self_time[name] += count
        subsystem[classify(stack)] += count

    def share(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / max(total, 1), 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "threads_pct": share(threads, 10),
        "subsystems_pct": share(subsystem, 20),
        "top_self_pct": share(self_time, 25),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--pipeline", type=int, default=1, help="requests in flight per client")
    ap.add_argument("--tag", default="", help="a name for this run, in the output file names")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if pyspy is None:  # py-spy is a binary in a wheel: install it into this venv
        subprocess.run([PY, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=600)
        pyspy = shutil.which("py-spy", path=str(Path(PY).parent))
    if pyspy is None:
        raise SystemExit("py-spy not found")
    tmp = Path(tempfile.mkdtemp(prefix="pyxos-profile-"))
    out: dict[str, Any] = {
        "machine": machine(tmp),
        "clients": args.clients,
        "pipeline": args.pipeline,
    }
    try:
        with pyxos_cluster(3, tmp / "cluster") as cluster:
            leader = pyxos_leader(cluster)
            follower = next(k for k in cluster.ids if k != leader)
            ep = endpoints_of(cluster, leader)
            bench = subprocess.Popen(
                [PY, "-m", "pyxos.benchmark", "--endpoints", ep, "--clients", str(args.clients),
                 "--pipeline", str(args.pipeline), "--duration", str(args.duration + 4),
                 "--warmup", "1", "--ratio", "0:1", "--json", "--no-progress"],
                stdout=subprocess.PIPE, text=True, cwd=REPO,
            )  # fmt: skip
            time.sleep(2.0)
            roles = {leader: "leader", follower: "follower"}
            spies, cpu0, m0, th0 = {}, {}, {}, {}
            for k in roles:
                pid = cluster.procs[k].pid
                cpu0[k] = cpu_seconds(pid)
                th0[k] = thread_cpu(pid)
                m0[k] = scrape(cluster.admin_port(k))
                spies[k] = subprocess.Popen(
                    [pyspy, "record", "--pid", str(pid), "--duration", str(int(args.duration)),
                     "--rate", str(args.rate), "--format", "raw", "--nonblocking", "--threads",
                     "--output", str(tmp / f"node{k}.folded")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
            t0, steal0 = time.monotonic(), steal_seconds()
            for k, spy in spies.items():
                _, err = spy.communicate(timeout=args.duration + 60)
                if spy.returncode != 0:
                    log(f"py-spy on node {k} failed: {err[-500:]}")
            wall = time.monotonic() - t0
            out["steal_cores"] = round((steal_seconds() - steal0) / wall, 3)
            used = {k: (cpu_seconds(cluster.procs[k].pid) - cpu0[k]) / wall for k in roles}
            th1 = {k: thread_cpu(cluster.procs[k].pid) for k in roles}
            m1 = {k: scrape(cluster.admin_port(k)) for k in roles}
            rates = {k: metric_rates(m0[k], m1[k], wall) for k in roles}
            applied = {
                k: m1[k].get("pyxos_commands_applied_total", 0.0)
                - m0[k].get("pyxos_commands_applied_total", 0.0)
                for k in roles
            }
            stdout, _ = bench.communicate(timeout=args.duration + 60)
            import json

            result = json.loads(stdout.strip().splitlines()[-1])
            out["load"] = {
                k: result.get(k) for k in ("ops_per_s", "p50_ms", "p99_ms", "errors", "generator")
            }
            for k, role in roles.items():
                folded = tmp / f"node{k}.folded"
                if not folded.exists():
                    continue
                summary = summarize(folded)
                summary["cpu_cores_used"] = round(used[k], 2)
                summary["cpu_us_per_command"] = per_command_us(
                    th0[k], th1[k], applied[k], thread_names(folded)
                )
                summary["node_metrics"] = rates[k]
                out[role] = summary
                RESULTS.mkdir(parents=True, exist_ok=True)
                stem = f"profile-{today()}{'-' + args.tag if args.tag else ''}-{role}"
                shutil.copy(folded, RESULTS / f"{stem}.folded")
                title = f"pyxos {role}, SET c={args.clients} P={args.pipeline} {args.tag}".strip()
                svg = render(folded.read_text(errors="replace"), title)
                (RESULTS / f"{stem}.svg").write_text(svg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["tag"] = args.tag
    write_result(f"profile-{today()}{'-' + args.tag if args.tag else ''}.json", out)
    load = out.get("load", {})
    print(f"load: {load.get('ops_per_s')} ops/s, p99 {load.get('p99_ms')} ms; "
          f"CPU stolen by the host meanwhile: {out.get('steal_cores')} cores")  # fmt: skip
    for role in ("leader", "follower"):
        s = out.get(role)
        if not s:
            continue
        print(f"\n== {role}: {s['cpu_cores_used']} cores, {s['samples']} samples")
        print("CPU us per command:", s["cpu_us_per_command"])
        print("node metrics:", s["node_metrics"])
        print("threads:", ", ".join(f"{k} {v}%" for k, v in s["threads_pct"]))
        print("subsystems:")
        for k, v in s["subsystems_pct"]:
            print(f"  {v:5.1f}%  {k}")
        print("top self time:")
        for k, v in s["top_self_pct"][:15]:
            print(f"  {v:5.1f}%  {k}")


if __name__ == "__main__":
    main()
