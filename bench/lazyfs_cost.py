"""What running on the lazy file system costs, so chaos numbers on it are read correctly.

    .venv/bin/python bench/lazyfs_cost.py [--rounds 3] [--duration 10] [--chaos-duration 30]

Root only (FUSE). Three measurements, each on plain data dirs and on lazy mounts
(``pyxos.chaos.power``), alternating plain/lazy in every round so that a busy moment of the
machine hits both:

1. storage: synced one-entry batches per second through each engine (``open_storage``);
2. cluster: ``pyxos bench`` SETs (100 B) against a 3-node cluster, 64 connections and 1;
3. chaos workload: a fault-free ``pyxos chaos`` run (its 10 clients, think time and key
   rotation; the nemesis's first fault is scheduled after the run ends), ok ops/s and p99.

Prints a table and writes ``bench/results/lazyfs-cost-DATE.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

from pyxos.chaos import power
from pyxos.chaos.power import LazyMount, PowerSupply
from pyxos.chaos.runner import ChaosConfig, run_chaos
from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import open_storage

MODES = ("plain", "lazy")


def synced_batches(path: Path, engine: str, calls: int) -> float:
    store = open_storage(engine, path, node_id=1, cluster_id="c", members=(1, 2, 3))
    try:
        started = time.perf_counter()
        for slot in range(1, calls + 1):
            entry = SlotValue(slot, Ballot(2, 1), (b"x" * 100,), False)
            store.write(Persist(entries=[entry], must_sync=True))
        return calls / (time.perf_counter() - started)
    finally:
        store.close()


def storage_round(root: Path, calls: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for engine in ("sqlite", "lmdb"):
        out[engine] = {}
        for mode in MODES:
            base = Path(tempfile.mkdtemp(dir=root))
            if mode == "plain":
                out[engine][mode] = synced_batches(base / "d", engine, calls)
                continue
            mount = LazyMount(base / "disk", base / "mnt")
            mount.start()
            try:
                out[engine][mode] = synced_batches(base / "mnt" / "d", engine, calls)
            finally:
                mount.stop()
    return out


def cluster_round(root: Path, duration: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        data = Path(tempfile.mkdtemp(dir=root))
        supply = PowerSupply(data, [1, 2, 3]) if mode == "lazy" else None
        if supply is not None:
            supply.start()
        try:
            with benchlib.pyxos_cluster(3, data, ["--log-level", "warning"]) as cluster:
                eps = benchlib.endpoints_of(cluster)
                row = {}
                for clients in (64, 1):
                    r = benchlib.pyxos_bench(eps, clients=clients, duration=duration)
                    row[f"c{clients}"] = {
                        k: r[k] for k in ("ops_per_s", "p50_ms", "p99_ms", "machine_load")
                    }
                out[mode] = row
        finally:
            if supply is not None:
                supply.close()
    return out


def chaos_round(duration: float) -> dict[str, dict[str, float]]:
    out = {}
    for mode in MODES:
        cfg = ChaosConfig(duration=duration, nemesis=("pause",), pace=1000, lazy_fs=mode == "lazy")
        report = asyncio.run(run_chaos(cfg))
        assert not report.faults, "a fault-free run injected a fault"
        steady = report.ops_per_second[2:-1] or report.ops_per_second
        out[mode] = {
            "ok_per_s": report.ok / report.duration_s,
            "median_s": statistics.median(steady),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per pyxos bench")
    ap.add_argument("--chaos-duration", type=float, default=30.0)
    ap.add_argument("--storage-calls", type=int, default=2000)
    args = ap.parse_args()
    if (reason := power.unavailable_reason()) is not None:
        sys.exit(f"lazy mounts are not available here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="pyxos-lazyfs-cost-"))
    result: dict[str, Any] = {"machine": benchlib.machine(root), "args": vars(args), "rounds": []}
    for i in range(args.rounds):
        benchlib.log(f"round {i + 1}/{args.rounds}")
        benchlib.wait_quiet(timeout=60)
        result["rounds"].append(
            {
                "storage": storage_round(root, args.storage_calls),
                "cluster": cluster_round(root, args.duration),
                "chaos": chaos_round(args.chaos_duration),
            }
        )
    rounds = result["rounds"]

    def median(get: Any) -> float:
        return round(statistics.median(get(r) for r in rounds), 2)

    rows = [
        (f"synced batches/s, {e}", lambda r, m, e=e: r["storage"][e][m]) for e in ("sqlite", "lmdb")
    ]
    for c in (64, 1):
        rows.append((f"SET/s, {c} conn", lambda r, m, c=c: r["cluster"][m][f"c{c}"]["ops_per_s"]))
        rows.append((f"SET p99 ms, {c} conn", lambda r, m, c=c: r["cluster"][m][f"c{c}"]["p99_ms"]))
    rows.append(("chaos workload ok ops/s", lambda r, m: r["chaos"][m]["ok_per_s"]))
    summary = {}
    title = f"median of {len(rounds)} rounds"
    print(f"{title:<28} {'plain':>10} {'lazy':>10} {'lazy/plain':>10}")
    for name, get in rows:
        plain = median(lambda r, g=get: g(r, "plain"))
        lazy = median(lambda r, g=get: g(r, "lazy"))
        summary[name] = {"plain": plain, "lazy": lazy, "ratio": round(lazy / plain, 2)}
        print(f"{name:<28} {plain:>10} {lazy:>10} {lazy / plain:>10.2f}")
    result["summary"] = summary
    benchlib.write_result(f"lazyfs-cost-{benchlib.today()}.json", result)


if __name__ == "__main__":
    main()
