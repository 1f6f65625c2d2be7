"""Latency percentiles and the result summary of one benchmark run.

Latencies are kept raw (nanoseconds in ``array('q')``, 8 bytes an operation) rather than in
a bucketed histogram: appending costs ~50 ns on the hot path, a bucket index computed in
Python costs several times that, and a ten-second run at 100k ops/s is only 8 MB. The
percentiles are exact (nearest rank on the sorted samples).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

OP_NAMES = ("get", "set")
GET, SET = 0, 1


def parse_ratio(ratio: str) -> float:
    """``"GET:SET"`` weights (``"1:1"``, ``"0:1"``, ``"9:1"``) -> the fraction of GETs."""
    left, sep, right = ratio.partition(":")
    try:
        gets, sets = float(left), float(right)
    except ValueError:
        raise ValueError(f"bad ratio {ratio!r}: expected GET:SET, e.g. 1:1 or 0:1") from None
    if not sep or gets < 0 or sets < 0 or gets + sets <= 0 or math.isnan(gets + sets):
        raise ValueError(f"bad ratio {ratio!r}: expected GET:SET, e.g. 1:1 or 0:1")
    return gets / (gets + sets)


def percentile(sorted_ns: Sequence[int], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of sorted nanoseconds, in milliseconds."""
    n = len(sorted_ns)
    if n == 0:
        return 0.0
    rank = min(n - 1, max(0, math.ceil(q / 100 * n) - 1))
    return sorted_ns[rank] / 1e6


def latency_summary(samples: Iterable[array[int]]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max/mean in milliseconds over every sample array given."""
    merged: list[int] = []
    for part in samples:
        merged.extend(part)
    merged.sort()
    n = len(merged)
    return {
        "p50_ms": round(percentile(merged, 50), 3),
        "p90_ms": round(percentile(merged, 90), 3),
        "p99_ms": round(percentile(merged, 99), 3),
        "p999_ms": round(percentile(merged, 99.9), 3),
        "max_ms": round(merged[-1] / 1e6, 3) if n else 0.0,
        "mean_ms": round(sum(merged) / n / 1e6, 3) if n else 0.0,
    }


def summarize(
    worker_results: Sequence[dict[str, Any]], window: float, config: dict[str, Any]
) -> dict[str, Any]:
    """Merge the workers' raw results into the JSON object ``pyxos bench --json`` prints.

    Contract (stable keys): ``ops`` (successful operations completed inside the measured
    window), ``ops_per_s``, ``p50_ms``, ``p99_ms``, ``p999_ms``, ``errors``; plus
    ``per_op`` (the same for ``get`` and ``set``), ``timeline`` (successful ops completed in
    each second from ``window_start_unix``), ``generator`` (CPU the load generator used)
    and ``config``.
    """
    window = max(window, 1e-9)
    out: dict[str, Any] = {}
    all_lat: list[array[int]] = []
    per_op: dict[str, Any] = {}
    total_errors = 0
    for op, name in enumerate(OP_NAMES):
        lat = [r["latencies"][op] for r in worker_results]
        errors = sum(r["errors"][op] for r in worker_results)
        ops = sum(len(a) for a in lat)
        total_errors += errors
        all_lat.extend(lat)
        if ops or errors:
            per_op[name] = {
                "ops": ops,
                "ops_per_s": round(ops / window, 1),
                "errors": errors,
                **latency_summary(lat),
            }
    ops = sum(len(a) for a in all_lat)
    out["ops"] = ops
    out["ops_per_s"] = round(ops / window, 1)
    out.update(latency_summary(all_lat))
    out["errors"] = total_errors
    out["error_samples"] = sorted({s for r in worker_results for s in r["error_samples"]})[:5]
    out["unfinished"] = sum(r["unfinished"] for r in worker_results)
    out["backlog"] = sum(r["backlog"] for r in worker_results)
    out["reconnects"] = sum(r["reconnects"] for r in worker_results)
    out["duration_s"] = round(window, 3)
    out["window_start_unix"] = round(min(r["window_start_unix"] for r in worker_results), 3)
    out["per_op"] = per_op
    seconds = max((len(r["timeline"]) for r in worker_results), default=0)
    out["timeline"] = [
        sum(r["timeline"][i] for r in worker_results if i < len(r["timeline"]))
        for i in range(seconds)
    ]
    cpu = [r["cpu_s"] / window for r in worker_results]
    out["generator"] = {
        "workers": len(worker_results),
        "cpu_s": round(sum(r["cpu_s"] for r in worker_results), 3),
        "cpu_pct_per_worker": [round(100 * c, 1) for c in cpu],
        "saturated": any(c > 0.9 for c in cpu),
    }
    out["config"] = config
    return out
