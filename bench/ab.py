"""A/B of two source trees of pyxos: interleaved rounds, medians of throughput and CPU.

    .venv/bin/python bench/ab.py A_SRC B_SRC [--rounds 4] [--clients 64] [--pipeline 1]
                                 [--duration 8] [--out FILE] [--env-a K=V] [--env-b K=V]
                                 [--load-src SRC]

``A_SRC`` and ``B_SRC`` are ``src`` directories (a worktree of each commit: ``git worktree
add /tmp/a <commit>``, then ``/tmp/a/src``); each round starts a fresh cluster (``--nodes``, 3) of
real ``pyxos serve`` processes with that tree on ``PYTHONPATH``, runs ``pyxos bench`` (SET,
100-byte values; ``--ratio 1:0`` for linearizable GETs) at the leader, and reads over the
measured window:

- ops/s and latency percentiles from the load generator;
- CPU per operation (the generator's rate over the window), of the leader and of one
  follower (``/proc/<pid>/stat``: user + system time, and system time alone), and their
  mean synced-write time (``/metrics``).

The two sides alternate (A B, B A, A B, ...) so that a slow phase of this shared machine
falls on both; on it, one run's numbers move by up to a third from one minute to the next,
so only medians over several rounds are worth comparing. Prints one JSON line per run and
the medians; ``--out`` writes them all as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PY, REPO, endpoints_of, pyxos_cluster, pyxos_leader
from profile_pyxos import metric_rates, scrape


def _cpu(pid: int, fields: tuple[int, ...] = (11, 12)) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(stat[i]) for i in fields) / os.sysconf("SC_CLK_TCK")


def _load_env(args: argparse.Namespace) -> dict[str, str] | None:
    """The load generator's environment: the side's own tree (``None``: inherited), or
    ``--load-src`` for both sides, so that an A/B of two builds (pure Python against mypyc)
    does not also change the CPU the generator takes from the nodes on this 2-core VM."""
    if not args.load_src:
        return None
    return dict(os.environ, PYTHONPATH=str(Path(args.load_src).resolve()))


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    """One cluster, one measured window, with the tree ``PYTHONPATH`` names (child mode)."""
    tmp = Path(tempfile.mkdtemp(prefix="pyxos-ab-"))
    with pyxos_cluster(args.nodes, tmp / "c") as cluster:
        leader = pyxos_leader(cluster)
        follower = next(k for k in cluster.ids if k != leader)
        bench = subprocess.Popen(
            [PY, "-m", "pyxos.benchmark", "--endpoints", endpoints_of(cluster, leader),
             "--clients", str(args.clients), "--pipeline", str(args.pipeline),
             "--duration", str(args.duration), "--warmup", "1", "--ratio", args.ratio, "--json",
             "--no-progress"],
            stdout=subprocess.PIPE, text=True, cwd=REPO, env=_load_env(args),
        )  # fmt: skip
        time.sleep(1.5)  # past the warm-up
        nodes = {"L": leader, "F": follower}
        pids = {r: cluster.procs[k].pid for r, k in nodes.items()}
        sys0 = {r: _cpu(p, (12,)) for r, p in pids.items()}
        cpu0 = {r: _cpu(p) for r, p in pids.items()}
        m0 = {r: scrape(cluster.admin_port(k)) for r, k in nodes.items()}
        t0 = time.monotonic()
        time.sleep(max(1.0, args.duration - 1.5))
        sys1 = {r: _cpu(p, (12,)) for r, p in pids.items()}
        cpu1 = {r: _cpu(p) for r, p in pids.items()}
        m1 = {r: scrape(cluster.admin_port(k)) for r, k in nodes.items()}
        wall = time.monotonic() - t0
        stdout, _ = bench.communicate(timeout=args.duration + 120)
    result = json.loads(stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {k: result.get(k) for k in ("ops_per_s", "p50_ms", "p99_ms", "errors")}
    for role in nodes:
        applied = (
            m1[role]["pyxos_commands_applied_total"] - m0[role]["pyxos_commands_applied_total"]
        )
        rates = metric_rates(m0[role], m1[role], wall)
        out[f"{role}_us"] = round(1e6 * (cpu1[role] - cpu0[role]) / max(applied, 1), 1)
        out[f"{role}_sys_us"] = round(1e6 * (sys1[role] - sys0[role]) / max(applied, 1), 1)
        out[f"{role}_sync_ms"] = rates["mean_synced_write_ms"]
        out["cmds_per_slot"] = rates["commands_per_slot"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", nargs="?", help="src directory of side A")
    ap.add_argument("b", nargs="?", help="src directory of side B")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--ratio", default="0:1", help="GET:SET mix (pyxos bench --ratio)")
    ap.add_argument("--env-a", action="append", default=[], help="K=V for side A's nodes")
    ap.add_argument("--env-b", action="append", default=[], help="K=V for side B's nodes")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--load-src", help="src directory the load generator runs (default: each side's)"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args)))
        return
    if not (args.a and args.b):
        ap.error("give the src directories of both sides")
    sides = {"A": (args.a, args.env_a), "B": (args.b, args.env_b)}
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for i in range(args.rounds):
        for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
            src, extra = sides[side]
            env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
            env.update(kv.split("=", 1) for kv in extra)
            proc = subprocess.run(
                [PY, __file__, "--child", "--nodes", str(args.nodes), "--clients",
                 str(args.clients), "--pipeline", str(args.pipeline), "--duration",
                 str(args.duration), "--ratio", args.ratio]
                + (["--load-src", args.load_src] if args.load_src else []),
                env=env, capture_output=True, text=True, timeout=args.duration + 300, check=False,
            )  # fmt: skip
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"run {side} failed: {proc.stderr[-2000:]}")
            runs[side].append(json.loads(lines[-1]))
            print(side, lines[-1], flush=True)
    medians = {
        side: {
            k: round(statistics.median(r[k] for r in rows), 2)
            for k in rows[0]
            if isinstance(rows[0][k], int | float)
        }
        for side, rows in runs.items()
    }
    for side, med in medians.items():
        print("MEDIAN", side, sides[side][0], json.dumps(med))
    if args.out:
        args.out.write_text(
            json.dumps({"sides": {s: {"src": v[0], "env": v[1]} for s, v in sides.items()},
                        "load": {"nodes": args.nodes, "clients": args.clients,
                                 "pipeline": args.pipeline, "duration_s": args.duration,
                                 "ratio": args.ratio, "load_src": args.load_src},
                        "runs": runs, "medians": medians}, indent=2) + "\n"
        )  # fmt: skip


if __name__ == "__main__":
    main()
