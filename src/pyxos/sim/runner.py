"""Seeded runs of the simulator: a faulty safety phase, then a healed liveness phase.

Swarm testing: each seed draws its own weather (how often nodes crash, lose their disk,
rot a record, tear a write, fail a write, pause, how skewed their clocks are, how lossy
and slow the network is, how often it splits, whether snapshots compact the log, how
long a sync takes, how many batches may wait on one, and the core's batching and
catch-up knobs), in the manner of FoundationDB's BUGGIFY: a fault kind is switched on
for a whole seed with some probability, then fires at its own rate. Everything flows
from the seed: the same seed on the same code gives the same trace hash.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from pyxos.core.replica import Options
from pyxos.faults import bug_named
from pyxos.sim.cluster import Cluster
from pyxos.sim.expiry_oracle import ALL_CHECKS
from pyxos.sim.nemesis import Nemesis
from pyxos.sim.network import Faults
from pyxos.sim.weather import Weather

SCENARIOS = ("random", "duelling", "membership")
"""random: every fault at rates drawn per seed (membership changes in half the seeds);
duelling: no faults, proposers starting phase 1 together; membership: the random
weather with membership changes always on (adds, removals, replacements, transfers)."""
WORKLOADS = ("log", "kv-expiry")
"""log: clients propose opaque commands, the applied log is checked; kv-expiry: every node
runs the key-value store, clients use expiry (``pyxos.sim.kv_workload``)."""


@dataclass(slots=True)
class SeedResult:
    seed: int
    nodes: int
    scenario: str
    ticks: int = 0
    deliveries: int = 0
    violation: str | None = None
    livelock: str | None = None
    commands_committed: int = 0
    reads_served: int = 0
    faults: int = 0
    commit_latencies: list[int] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)
    trace_hash: str = ""
    wall_seconds: float = 0.0
    workload: str = "log"

    @property
    def ok(self) -> bool:
        return self.violation is None and self.livelock is None

    def reproduce(self) -> str:
        command = (
            f"pyxos sim --seeds 1 --start-seed {self.seed} --nodes {self.nodes} "
            f"--scenario {self.scenario}"
        )
        return command if self.workload == "log" else f"{command} --workload {self.workload}"


def run_seed(
    seed: int,
    nodes: int = 3,
    scenario: str = "random",
    *,
    safety_ticks: int = 1000,
    liveness_budget: int = 1500,
    bug: str | None = None,
    white_box: bool = True,
    options: Options | None = None,
    workload: str = "log",
    kv_checks: frozenset[str] = ALL_CHECKS,
) -> SeedResult:
    """Run one seed; the result names the first violation or livelock, if any.

    ``bug`` plants a named bug (``pyxos.faults``), and ``white_box=False`` leaves only
    the end-to-end checks: the tests of the checker. ``workload`` is one of
    :data:`WORKLOADS`; ``kv_checks`` the checks of the key-value workload's oracle
    (``pyxos.sim.expiry_oracle``) that are on.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    started = time.perf_counter()
    rng = random.Random(seed * 2654435761 + nodes)
    result = SeedResult(seed, nodes, scenario, workload=workload)
    busy_batch = (1, 4, 64)[seed % 3]
    if scenario in ("random", "membership"):
        weather = Weather.draw(rng, nodes, busy_batch)
        if scenario == "membership":
            weather.membership = rng.choice((0.01, 0.03, 0.06))
        if workload != "log":
            weather.membership = 0.0  # the key-value clocks are per founding node
    else:
        weather = Weather.calm(busy_batch)
    cluster = Cluster(
        seed,
        nodes,
        faults=weather.faults,
        options=options or weather.options,
        clients=weather.clients,
        read_ratio=weather.read_ratio,
        compact_every=weather.compact_every,
        sync_delay=weather.sync_delay,
        max_in_flight=weather.max_in_flight,
        write_errors=weather.write_errors,
        rates=weather.rates,
        bug=bug_named(bug) if bug is not None else None,
        white_box=white_box,
        workload=workload,
        kv_checks=kv_checks,
    )
    if any(rate != 1.0 for rate in weather.rates.values()):
        cluster.coverage["clock_skew"] += 1
    if cluster.kv and cluster.clocks.skewed():
        cluster.coverage["wall_clock_skew"] += 1
    members = cluster.config.members
    nemesis = Nemesis(cluster, rng, weather)
    next_duel = rng.randint(20, 40)
    stall_budget = liveness_budget // 2

    for _ in range(safety_ticks):
        now = cluster.now
        if scenario != "duelling":
            nemesis.tick()
        elif now >= next_duel:
            # Two or three nodes start phase 1 at the very same tick, over and over.
            count = min(rng.choice((2, 3)), nodes)
            for node in rng.sample(members, count):
                cluster.nodes[node].replica.campaign()
            next_duel = now + rng.randint(30, 60)
            result.faults += 1
        cluster.step()
        if cluster.violation:
            break
        if scenario == "duelling":
            oldest = cluster.workload.oldest_pending()
            if oldest is not None and cluster.now - oldest > stall_budget:
                result.livelock = f"a command waited {cluster.now - oldest} ticks during duels"
                break

    if cluster.violation is None and result.livelock is None:
        _liveness(cluster, liveness_budget, result)
    stats = cluster.workload.stats
    result.faults += nemesis.faults
    result.ticks = cluster.now
    result.deliveries = cluster.deliveries
    result.violation = cluster.violation and f"{cluster.violation} (tick {cluster.violation_tick})"
    result.commands_committed = stats.commands_acked
    result.reads_served = stats.reads_served
    result.commit_latencies = stats.commit_latencies
    result.coverage = dict(cluster.coverage_totals())
    result.trace_hash = cluster.trace.hexdigest()
    result.wall_seconds = time.perf_counter() - started
    return result


def _liveness(cluster: Cluster, budget: int, result: SeedResult) -> None:
    """Heal everything; every pending command must then commit within ``budget`` ticks."""
    cluster.net.heal()
    cluster.net.faults = Faults(max_delay=2)
    cluster.write_errors = 0.0
    for node in list(cluster.nodes.values()):
        node.paused_until = 0
        if not node.up:
            cluster.restart(node.id)
    cluster.workload.generate = False
    deadline = cluster.now + budget
    while cluster.now < deadline and cluster.violation is None:
        cluster.step()
        if cluster.workload.pending() == 0 and _converged(cluster):
            cluster.check_final()
            return
    if cluster.violation is None:
        roles = {n.id: n.replica.describe() for n in cluster.current_nodes()}
        result.livelock = (
            f"{cluster.workload.pending()} commands still pending after {budget} healed "
            f"ticks; nodes: {roles}"
        )


def _converged(cluster: Cluster) -> bool:
    top = cluster.top_chosen()
    if cluster.leader() is None:
        return False
    return all(n.app.last >= top for n in cluster.current_nodes())


def percentile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
