"""``pyxos bench``: spawn the workers, show progress, merge and print the results.

The parent process does no load itself: it preloads the keyspace (when the mix has GETs),
spawns ``workers`` processes (each an event loop with its share of the connections), sets
one common start time, draws a progress bar on stderr from counters the workers publish
in shared memory, and merges their raw latencies into exact percentiles at the end.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pyxos.benchmark.loadgen import (
    MAX_KEYS,
    PHASE_DONE,
    PHASE_DRAINING,
    PHASE_MEASURING,
    PHASE_READY,
    PHASE_WARMUP,
    SHARED_HEADER,
    Endpoint,
    WorkerPlan,
    preload,
    worker_process,
)
from pyxos.benchmark.stats import parse_ratio, summarize

DEFAULT_ENDPOINTS = "127.0.0.1:6380,127.0.0.1:6381,127.0.0.1:6382"


class BenchError(Exception):
    """The benchmark could not run (bad options, nothing to connect to, a worker died)."""


def parse_endpoints(spec: str) -> list[Endpoint]:
    out: list[Endpoint] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        try:
            out.append((host.strip("[]") or "127.0.0.1", int(port)))
        except ValueError:
            raise BenchError(f"bad endpoint {item!r}: expected HOST:PORT") from None
    if not out:
        raise BenchError("no endpoints given")
    return out


def leader_endpoint(endpoints: Sequence[Endpoint]) -> Endpoint | None:
    """The endpoint of the node the cluster names as leader (pyxos only), if any."""
    from pyxos.client.status import fetch_status

    rows = fetch_status(",".join(f"{h}:{p}" for h, p in endpoints))
    by_node = {r["node_id"]: r["endpoint"] for r in rows if "error" not in r}
    for row in rows:
        leader = row.get("leader_id")
        if leader in by_node:
            return parse_endpoints(by_node[leader])[0]
    return None


def run_bench(
    endpoints: str,
    clients: int,
    duration: float,
    value_size: int,
    ratio: str,
    pipeline: int = 1,
    keys: int = 10_000,
    *,
    workers: int = 1,
    warmup: float = 1.0,
    rate: float = 0.0,
    leader: bool = False,
    password: str | None = None,
    seed: int | None = None,
    timeout: float = 10.0,
    progress: bool = True,
    do_preload: bool | None = None,
    write: str = "set",
) -> dict[str, Any]:
    """Run one benchmark and return its summary (see :func:`stats.summarize`)."""
    if clients < 1 or pipeline < 1 or workers < 1 or keys < 1 or value_size < 0:
        raise BenchError("clients, pipeline, workers and keys must be >= 1; value size >= 0")
    if keys > MAX_KEYS:
        raise BenchError(f"at most {MAX_KEYS} keys")
    if duration <= 0 or warmup < 0 or rate < 0:
        raise BenchError("duration must be positive; warmup and rate not negative")
    try:
        get_fraction = parse_ratio(ratio)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    targets = parse_endpoints(endpoints)
    if leader:
        found = leader_endpoint(targets)
        if found is None:
            raise BenchError("--leader: no node names a leader that is among the endpoints")
        targets = [found]
    workers = min(workers, clients)
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")

    if do_preload if do_preload is not None else get_fraction > 0:
        try:
            asyncio.run(
                asyncio.wait_for(
                    preload(targets[0], keys, value_size, password), max(60.0, keys / 1000)
                )
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise BenchError(f"preloading {keys} keys into {targets[0]} failed: {exc}") from exc

    plans = []
    first = 0
    for i in range(workers):
        conns = clients // workers + (1 if i < clients % workers else 0)
        plans.append(
            WorkerPlan(
                index=i,
                endpoints=tuple(targets),
                connections=conns,
                first_connection=first,
                pipeline=pipeline,
                get_fraction=get_fraction,
                keys=keys,
                value_size=value_size,
                warmup=warmup,
                duration=duration,
                rate=rate * conns / clients,
                timeout=timeout,
                password=password,
                seed=seed + 7919 * i,
                write=write,
            )
        )
        first += conns

    ctx = multiprocessing.get_context("spawn")
    shared = ctx.RawArray("q", SHARED_HEADER + 3 * workers)
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(target=worker_process, args=(p, shared, results), daemon=True) for p in plans
    ]
    for p in procs:
        p.start()
    try:
        collected = _supervise(shared, results, procs, plans, duration, warmup, timeout, progress)
    finally:
        for p in procs:
            p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()

    failures = [r for r in collected if isinstance(r, str)]
    if failures:
        raise BenchError("; ".join(failures))
    window = max(r["window_s"] for r in collected)
    config = {
        "endpoints": [f"{h}:{p}" for h, p in targets],
        "clients": clients,
        "pipeline": pipeline,
        "duration": duration,
        "warmup": warmup,
        "value_size": value_size,
        "ratio": ratio,
        "write": write,
        "keys": keys,
        "workers": workers,
        "mode": "open-loop" if rate > 0 else "closed-loop",
        "offered_ops_per_s": rate or None,
    }
    return summarize(collected, window, config)


def _supervise(
    shared: Any,
    results: Any,
    procs: list[Any],
    plans: list[WorkerPlan],
    duration: float,
    warmup: float,
    timeout: float,
    progress: bool,
) -> list[Any]:
    """Start the workers together, draw progress, and collect one result from each."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    n = len(plans)
    collected: dict[int, Any] = {}
    console = Console(stderr=True)
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=not progress,
        refresh_per_second=4,
        transient=False,
    )

    def phases() -> list[int]:
        return [int(shared[SHARED_HEADER + 3 * i]) for i in range(n)]

    def drain_results(block_for: float) -> None:
        try:
            index, value = results.get(timeout=block_for)
        except queue.Empty:
            return
        collected[index] = value

    def dead() -> list[str]:
        return [
            f"worker {i} exited with status {p.exitcode} before reporting"
            for i, p in enumerate(procs)
            if p.exitcode is not None and i not in collected
        ]

    with bar:
        task = bar.add_task("connecting", total=duration, stats="")
        deadline = time.monotonic() + timeout + 30
        while not all(ph >= PHASE_READY for ph in phases()):
            drain_results(0.02)
            if any(isinstance(v, str) for v in collected.values()) or dead():
                break
            if time.monotonic() > deadline:
                raise BenchError(f"workers did not connect within {timeout + 30:.0f}s")
        shared[0] = time.monotonic_ns() + 50_000_000
        started = time.monotonic()
        deadline = started + warmup + duration + timeout + 30
        state = {"last_ops": 0, "last_t": started, "rate": 0.0}

        def step() -> bool:
            """One progress update; False when a worker died."""
            drain_results(0.25)
            if dead():
                return False
            now = time.monotonic()
            if now > deadline:
                raise BenchError("workers did not finish in time")
            ph = min(phases())
            ops = sum(int(shared[SHARED_HEADER + 1 + 3 * i]) for i in range(n))
            errors = sum(int(shared[SHARED_HEADER + 2 + 3 * i]) for i in range(n))
            if now - state["last_t"] >= 0.5:
                state["rate"] = max(0.0, (ops - state["last_ops"]) / (now - state["last_t"]))
                state["last_ops"], state["last_t"] = ops, now
            label = {
                PHASE_WARMUP: "warming up",
                PHASE_MEASURING: "measuring",
                PHASE_DRAINING: "draining",
                PHASE_DONE: "done",
            }.get(ph, "starting")
            bar.update(
                task,
                description=label,
                completed=min(duration, max(0.0, now - started - warmup)),
                stats=f"{ops:,} ops  {state['rate']:,.0f} ops/s  {errors} errors",
            )
            return True

        while len(collected) < n:
            try:
                if not step():
                    break
            except KeyboardInterrupt:
                if shared[1]:
                    raise
                shared[1] = 1  # end the window now; a second Ctrl-C aborts
                console.print("stopping early: reporting what was measured so far")
        bar.update(task, completed=duration)
    missing = [f"worker {i} returned nothing" for i in range(n) if i not in collected]
    if missing or dead():
        raise BenchError("; ".join(missing + dead()))
    return [collected[i] for i in range(n)]


def format_summary(result: dict[str, Any]) -> str:
    """The human-readable report printed before the JSON line."""
    cfg = result["config"]
    mode = cfg["mode"]
    if cfg.get("offered_ops_per_s"):
        mode += f" at {cfg['offered_ops_per_s']:,.0f} ops/s offered"
    lines = [
        f"{cfg['clients']} clients x pipeline {cfg['pipeline']} ({cfg['workers']} worker "
        f"process{'es' if cfg['workers'] > 1 else ''}, {mode}), {cfg['value_size']} B values, "
        f"GET:SET {cfg['ratio']}, {cfg['keys']:,} keys, against {', '.join(cfg['endpoints'])}",
        f"{result['ops']:,} ops in {result['duration_s']:.2f}s: "
        f"{result['ops_per_s']:,.0f} ops/s, {result['errors']} errors",
        "",
        f"{'op':<6}{'ops/s':>12}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}"
        f"{'p99.9 ms':>10}{'max ms':>10}{'errors':>8}",
    ]
    rows = [*result["per_op"].items(), ("all", result)]
    for name, r in rows:
        lines.append(
            f"{name:<6}{r['ops_per_s']:>12,.0f}{r['p50_ms']:>10.3f}{r['p90_ms']:>10.3f}"
            f"{r['p99_ms']:>10.3f}{r['p999_ms']:>10.3f}{r['max_ms']:>10.3f}{r['errors']:>8}"
        )
    gen = result["generator"]
    lines.append("")
    lines.append(
        "load generator CPU: "
        + ", ".join(f"{p:.0f}%" for p in gen["cpu_pct_per_worker"])
        + " of one core per worker"
        + (
            " (SATURATED: add --workers; the numbers may be the generator's)"
            if gen["saturated"]
            else ""
        )
    )
    for sample in result["error_samples"]:
        lines.append(f"error: {sample}")
    if result["unfinished"]:
        lines.append(f"{result['unfinished']} requests still unanswered at the end")
    if result["backlog"]:
        lines.append(f"{result['backlog']} due requests never sent (all connections full)")
    return "\n".join(lines)


def main_bench(
    endpoints: str,
    clients: int,
    duration: float,
    value_size: int,
    ratio: str,
    pipeline: int,
    as_json: bool,
    keys: int,
    **options: Any,
) -> int:
    """``pyxos bench``: print the report (and, with ``as_json``, one JSON object last).

    ``options`` are :func:`run_bench`'s keyword options (``workers``, ``warmup``, ``rate``,
    ``leader``, ``password``, ``seed``, ``progress``...).

    Exit status: 0 when operations completed without errors; 1 when the run had errors or
    completed nothing; 2 when it could not run at all; 130 when interrupted twice. One
    Ctrl-C (SIGINT) ends the measurement early and reports the window measured so far.
    """
    # Ctrl-C (SIGINT) ends the measurement early and still reports it. Installed
    # explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_bench(
            endpoints, clients, duration, value_size, ratio, pipeline, keys, **options
        )
    except BenchError as exc:
        print(f"pyxos bench: {exc}", file=sys.stderr)
        if as_json:
            print(json.dumps({"error": str(exc)}))
        return 2
    except KeyboardInterrupt:
        print("pyxos bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    print(format_summary(result))
    if result["generator"]["saturated"]:
        print(
            "warning: a load-generator worker was busy >90% of the time; "
            "results may be limited by the generator (try --workers 2)",
            file=sys.stderr,
        )
    if as_json:
        print(json.dumps(result))
    sys.stdout.flush()
    return 0 if result["ops"] > 0 and result["errors"] == 0 else 1
