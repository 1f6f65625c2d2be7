"""Seeded swarm simulation: the CI seed budget, determinism, and checks that can fail."""

from __future__ import annotations

from typing import Any

import pytest
from broken import AcceptsBelowPromise, AppliesOutOfOrder, ReadsWithoutQuorum, SkipsReproposal

from pyxos.sim.runner import run_seed
from pyxos.sim.swarm import run_swarm


@pytest.mark.parametrize(
    ("nodes", "scenario", "seeds"),
    [(3, "random", 200), (5, "random", 100), (3, "duelling", 100), (5, "duelling", 100)],
)
def test_ci_seed_budget_holds_every_invariant(nodes: int, scenario: str, seeds: int) -> None:
    summary = run_swarm(range(seeds), nodes, scenario, jobs=2)
    failures = [(r.seed, r.violation, r.livelock) for r in summary.failed]
    assert failures == []
    assert summary.seeds == seeds
    # The runs did real work: commands committed, faults injected, reads served.
    assert summary.commands_committed > 50 * seeds
    assert summary.faults > seeds
    assert summary.reads_served > 0


def test_duelling_proposers_commit_within_a_bounded_number_of_ticks() -> None:
    summary = run_swarm(range(50), 3, "duelling", jobs=2)
    data = summary.as_json(3, "duelling", 0)
    assert data["livelocks"] == 0
    assert 0 < data["ticks_to_commit_p50"] <= data["ticks_to_commit_p99"] < 400


def test_same_seed_same_trace() -> None:
    a = run_seed(11, 3, "random")
    b = run_seed(11, 3, "random")
    c = run_seed(12, 3, "random")
    assert a.trace_hash == b.trace_hash
    assert (a.deliveries, a.commands_committed) == (b.deliveries, b.commands_committed)
    assert a.trace_hash != c.trace_hash


BUGS: dict[str, dict[str, Any]] = {
    "acceptor accepts below its promise": {"replica_factory": AcceptsBelowPromise},
    "acceptor forgets its promise after restart": {"forget_promises": True},
    "learner applies out of order": {"replica_factory": AppliesOutOfOrder},
    "leader skips re-proposing phase-1 values": {"replica_factory": SkipsReproposal},
    "reads served without a quorum round": {"replica_factory": ReadsWithoutQuorum},
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_invariants_catch_a_broken_replica_within_the_ci_budget(bug: str) -> None:
    for seed in range(200):
        result = run_seed(seed, 3, "random", **BUGS[bug])
        if result.violation:
            return
    pytest.fail(f"no seed of 200 caught: {bug}")
