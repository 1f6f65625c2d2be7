"""The simulator's kv-expiry workload: the real key-value store on every node, skewed wall
clocks, leader changes; its oracle (digests, no resurrection, the edge) and what it catches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import pytest
from click.testing import CliRunner

from pyxos import cli
from pyxos.faults import BUGS
from pyxos.kv import KVStateMachine, encode_request
from pyxos.sim import coverage, kv_workload
from pyxos.sim.expiry_oracle import ExpiryOracle
from pyxos.sim.runner import run_seed
from pyxos.sim.swarm import run_swarm

KV = "kv-expiry"
CI_SEEDS = 40
"""Seeds of the kv-expiry swarm CI runs (three nodes); the broken build must be caught
within them."""
KV_BUGS = sorted(name for name, bug in BUGS.items() if bug.local_expiry)


def test_ci_swarm_holds_every_check_and_reaches_every_expiry_path() -> None:
    summary = run_swarm(range(CI_SEEDS), 3, "random", jobs=2, workload=KV)
    failures = [(r.seed, r.violation, r.livelock) for r in summary.failed]
    assert failures == []
    assert summary.commands_committed > 30 * CI_SEEDS
    assert summary.reads_served > 10 * CI_SEEDS
    assert summary.faults > CI_SEEDS
    # The checks were silent because nothing went wrong, not because nothing ran: clock
    # ticks proposed by leaders (after leader changes too), keys expired through the log,
    # reads that met a due key and ticked first, stamps below the replicated clock.
    assert [name for name in coverage.KV_POINTS if not summary.coverage[name]] == []
    assert summary.coverage["crash"] and summary.coverage["partition_leader"]


def test_five_nodes_hold_every_check() -> None:
    summary = run_swarm(range(8), 5, "random", jobs=2, workload=KV)
    assert [(r.seed, r.violation, r.livelock) for r in summary.failed] == []
    assert summary.coverage["read_tick_proposed"] > 0


def test_same_seed_same_trace_and_the_log_workload_is_untouched() -> None:
    a = run_seed(7, 3, "random", workload=KV)
    b = run_seed(7, 3, "random", workload=KV)
    assert (a.trace_hash, a.coverage, a.reads_served) == (b.trace_hash, b.coverage, b.reads_served)
    assert run_seed(8, 3, "random", workload=KV).trace_hash != a.trace_hash
    log = run_seed(7, 3, "random")
    assert log.trace_hash != a.trace_hash and "read_at_edge" not in log.coverage
    assert a.reproduce().endswith("--scenario random --workload kv-expiry")
    assert log.reproduce().endswith("--scenario random")


def _caught(args: tuple[int, str, tuple[str, ...]]) -> str | None:
    seed, bug, checks = args
    return run_seed(seed, 3, "random", workload=KV, bug=bug, kv_checks=frozenset(checks)).violation


def _first_caught(bug: str, checks: Sequence[str]) -> tuple[int, str] | None:
    """The first CI seed whose run of ``bug`` fails with only ``checks`` on (in batches of
    four on two processes, stopping at the first batch that catches it)."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        for start in range(0, CI_SEEDS, 4):
            seeds = range(start, min(start + 4, CI_SEEDS))
            results = pool.map(_caught, [(s, bug, tuple(checks)) for s in seeds])
            for seed, violation in zip(seeds, results, strict=True):
                if violation is not None:
                    return seed, violation
    return None


@pytest.mark.parametrize("bug", KV_BUGS)
@pytest.mark.parametrize(
    ("checks", "expect"),
    [(("digests",), "replicas diverged"), (("resurrection",), "resurrection of")],
)
def test_each_new_check_alone_catches_a_replica_that_expires_by_its_own_clock(
    bug: str, checks: tuple[str, ...], expect: str
) -> None:
    caught = _first_caught(bug, checks)
    assert caught is not None, f"none of CI's seeds caught {bug} with {checks}"
    seed, violation = caught
    assert expect in violation, (seed, violation)
    # What a failing seed prints reproduces it, workload included.
    again = run_seed(seed, 3, "random", workload=KV, bug=bug, kv_checks=frozenset(checks))
    assert again.violation == violation
    assert again.reproduce() == (
        f"pyxos sim --seeds 1 --start-seed {seed} --nodes 3 --scenario random --workload {KV}"
    )


def test_the_kv_bug_changes_nothing_in_the_log_workload() -> None:
    # The bug lives in the key-value store: with opaque commands the run is the same, so
    # the catch above is the new checks' doing.
    for bug in KV_BUGS:
        broken = run_seed(3, 3, "random", bug=bug)
        assert broken.violation is None
        assert broken.trace_hash == run_seed(3, 3, "random").trace_hash


def test_the_edge_check_catches_a_read_that_serves_an_expired_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that never ticks before a read: it answers from the replicated state even
    # when the key is past its time by its own clock.
    monkeypatch.setattr(kv_workload, "read_needs_tick", lambda *args: False)
    for seed in range(CI_SEEDS):
        violation = run_seed(seed, 3, "random", workload=KV).violation
        if violation is not None:
            assert "past its expiry time" in violation
            return
    pytest.fail("no seed caught reads served past expiry")


# --------------------------------------------------------------------- the oracle alone


def test_digests_refuse_two_states_at_one_index() -> None:
    oracle = ExpiryOracle()
    a, b = KVStateMachine(), KVStateMachine()
    oracle.state(1, 0, a.digest())
    oracle.state(2, 0, b.digest())
    assert oracle.violation is None and oracle.compared == 1
    b.apply(encode_request([b"SET", b"k", b"v"]))
    oracle.state(1, 1, a.digest())
    oracle.state(3, 1, b.digest())
    assert oracle.violation is not None
    assert oracle.violation.startswith("replicas diverged at index 1: node 1 has state")


def test_resurrection_of_an_old_value_is_refused() -> None:
    oracle = ExpiryOracle()
    oracle.wrote(b"k", b"v1", 3, creates=True)
    oracle.read("GET k", b"k", True, b"v1", started=10, served=12, position=4)
    oracle.read("GET k", b"k", False, None, started=20, served=25, position=6)
    # Begun before the "gone" read was served: concurrent with it, either order is fine.
    oracle.read("GET k", b"k", True, b"v1", started=24, served=30, position=5)
    assert oracle.violation is None
    oracle.read("GET k", b"k", True, b"v1", started=26, served=30, position=7)
    assert oracle.violation is not None and "resurrection of b'k'" in oracle.violation
    assert "old value b'v1' (set at index 3)" in oracle.violation


def test_a_key_present_again_without_a_write_that_creates_it_is_refused() -> None:
    oracle = ExpiryOracle()
    oracle.wrote(b"k", b"v1", 3, creates=True)
    oracle.read("TTL k", b"k", False, None, started=20, served=25, position=6)
    oracle.wrote(b"k", b"v2", 7, creates=False)  # SET XX: cannot bring it back
    oracle.wrote(b"k", None, 8, creates=False)  # EXPIRE, PERSIST, DEL: neither
    oracle.read("EXISTS k", b"k", True, None, started=30, served=31, position=9)
    assert oracle.violation is not None and "reported it present" in oracle.violation


def test_a_key_set_again_after_it_was_reported_gone_is_fine() -> None:
    oracle = ExpiryOracle()
    oracle.wrote(b"k", b"v1", 3, creates=True)
    oracle.read("GET k", b"k", False, None, started=20, served=25, position=6)
    oracle.wrote(b"k", b"v2", 7, creates=True)
    oracle.read("GET k", b"k", True, b"v2", started=30, served=31, position=7)
    oracle.read("PTTL k", b"k", True, None, started=30, served=31, position=8)
    assert oracle.violation is None
    oracle.read("GET k", b"k", True, b"v9", started=32, served=33, position=8)
    assert oracle.violation == "GET k returned b'v9', which no write set"


def test_the_edge_check_refuses_a_key_reported_past_its_time() -> None:
    oracle = ExpiryOracle()
    oracle.edge(1, "GET k", b"k", expires_at=1000, clock=999)
    oracle.edge(1, "GET k", b"k", expires_at=None, clock=5000)
    assert oracle.violation is None
    oracle.edge(2, "GET k", b"k", expires_at=1000, clock=1000)
    assert oracle.violation is not None and "0 ms past its expiry time 1000" in oracle.violation


def test_checks_that_are_off_stay_silent() -> None:
    oracle = ExpiryOracle(frozenset({"edge"}))
    oracle.state(1, 1, "a")
    oracle.state(2, 1, "b")
    oracle.read("GET k", b"k", True, b"never", started=1, served=2, position=1)
    assert oracle.violation is None


# --------------------------------------------------------------------- the command line


def test_cli_runs_the_mode_and_reports_its_coverage() -> None:
    args = ["sim", "--seeds", "2", "--jobs", "1", "--workload", KV, "--coverage", "--json"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "workload kv-expiry: 0 violations" in result.output
    assert "read_at_edge" in result.output and "expiry_tick_proposed" in result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["workload"] == KV and data["seeds"] == 2 and data["failed_seeds"] == []
    assert data["coverage"]["expiry_tick_proposed"] > 0
