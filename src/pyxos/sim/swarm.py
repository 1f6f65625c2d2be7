"""Many seeds at once, spread over processes, summarized for ``pyxos sim``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyxos.sim.runner import SeedResult, percentile, run_seed


@dataclass(slots=True)
class SwarmSummary:
    seeds: int = 0
    steps: int = 0
    deliveries: int = 0
    violations: int = 0
    livelocks: int = 0
    commands_committed: int = 0
    reads_served: int = 0
    faults: int = 0
    cpu_seconds: float = 0.0
    failed: list[SeedResult] = field(default_factory=list)
    latencies: list[int] = field(default_factory=list)
    coverage: Counter[str] = field(default_factory=Counter)

    def add(self, r: SeedResult) -> None:
        self.seeds += 1
        self.steps += r.ticks
        self.deliveries += r.deliveries
        self.commands_committed += r.commands_committed
        self.reads_served += r.reads_served
        self.faults += r.faults
        self.cpu_seconds += r.wall_seconds
        self.latencies.extend(r.commit_latencies)
        self.coverage.update(r.coverage)
        if r.violation:
            self.violations += 1
        if r.livelock:
            self.livelocks += 1
        if not r.ok:
            self.failed.append(r)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_json(
        self, nodes: int, scenario: str, start: int, workload: str = "log"
    ) -> dict[str, Any]:
        return {
            "seeds": self.seeds,
            "start_seed": start,
            "nodes": nodes,
            "scenario": scenario,
            "workload": workload,
            "steps": self.steps,
            "deliveries": self.deliveries,
            "deliveries_per_second_per_core": round(self.deliveries / self.cpu_seconds)
            if self.cpu_seconds
            else 0,
            "violations": self.violations,
            "livelocks": self.livelocks,
            "commands_committed": self.commands_committed,
            "reads_served": self.reads_served,
            "faults": self.faults,
            "ticks_to_commit_p50": percentile(self.latencies, 0.50),
            "ticks_to_commit_p99": percentile(self.latencies, 0.99),
            "ticks_to_commit_max": max(self.latencies, default=0),
            "failed_seeds": [r.seed for r in self.failed],
            "coverage": dict(sorted(self.coverage.items())),
        }


def _run(args: tuple[int, int, str, str]) -> SeedResult:
    seed, nodes, scenario, workload = args
    if workload == "log":
        return run_seed(seed, nodes, scenario)
    return run_seed(seed, nodes, scenario, workload=workload)


def run_swarm(
    seeds: range,
    nodes: int,
    scenario: str,
    *,
    jobs: int | None = None,
    on_result: Callable[[SeedResult], None] | None = None,
    workload: str = "log",
) -> SwarmSummary:
    """Run every seed in ``seeds``; ``jobs`` processes (default: one per core)."""
    jobs = jobs or os.cpu_count() or 1
    summary = SwarmSummary()
    for result in _results(seeds, nodes, scenario, workload, jobs):
        summary.add(result)
        if on_result is not None:
            on_result(result)
    summary.failed.sort(key=lambda r: r.seed)
    return summary


def _results(
    seeds: range, nodes: int, scenario: str, workload: str, jobs: int
) -> Iterator[SeedResult]:
    work = [(s, nodes, scenario, workload) for s in seeds]
    if jobs <= 1 or len(work) <= 1:
        yield from map(_run, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_run, work, chunksize=max(1, len(work) // (jobs * 8)))
