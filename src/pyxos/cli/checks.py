"""``pyxos sim``, ``pyxos chaos`` and ``pyxos check``: the commands that test safety.

Each exits with status 0 only when everything it checked holds, and prints the command
that reproduces a failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pyxos.sim import coverage
from pyxos.sim.runner import SCENARIOS, WORKLOADS, SeedResult
from pyxos.sim.swarm import run_swarm

__all__ = ["chaos", "check", "sim"]


@click.command()
@click.option("--seeds", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--start-seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option(
    "--scenario",
    default="random",
    show_default=True,
    type=click.Choice(SCENARIOS),
    help="random: swarm of crashes, partitions, loss, duplication and delay; "
    "duelling: two or three nodes start phase 1 at the same tick, again and again; "
    "membership: the random swarm with nodes added, promoted, removed, replaced (wiped, "
    "under a new incarnation) and leadership transferred in every seed.",
)
@click.option(
    "--workload",
    default="log",
    show_default=True,
    type=click.Choice(WORKLOADS),
    help="log: clients propose opaque commands; kv-expiry: every node runs the key-value "
    "store, clients set keys with TTLs and read them at the edge of expiry, each node "
    "stamps by its own skewed wall clock.",
)
@click.option("--jobs", default=0, help="Processes to use (default: one per core).")
@click.option(
    "--coverage",
    "show_coverage",
    is_flag=True,
    help="Print how often each message kind, core path and fault was reached.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line.")
def sim(
    seeds: int,
    start_seed: int,
    nodes: int,
    scenario: str,
    workload: str,
    jobs: int,
    show_coverage: bool,
    as_json: bool,
) -> None:
    """Deterministic simulation of a whole cluster under a seeded fault schedule.

    A ghost records what every acceptor accepted, hence what is really chosen in each
    slot. After every step it checks that no two values are chosen in one slot, that
    every value a node applies, installs or holds on disk under its commit index is the
    chosen one, and (white box) that proposals, commit notices and chosen claims agree
    with it and that no acceptor goes back on a promise or votes with a lost disk; the
    clients check that reads are linearizable and acknowledged commands stay. Then it
    heals every fault and requires all pending commands to commit within a tick budget.
    With --workload kv-expiry, replicas' state digests must also agree at every index, a
    key reported gone must stay gone until set again, and no read may report a key past
    its time by the reading node's clock.
    Exit status 1 on any failure, printing the command that reproduces it.
    """

    def report(result: SeedResult) -> None:
        if not result.ok:
            what = result.violation or f"livelock: {result.livelock}"
            click.echo(f"seed {result.seed} FAILED: {what}", err=True)
            click.echo(f"  reproduce: {result.reproduce()}", err=True)

    summary = run_swarm(
        range(start_seed, start_seed + seeds),
        nodes,
        scenario,
        jobs=jobs or None,
        on_result=report,
        workload=workload,
    )
    data = summary.as_json(nodes, scenario, start_seed, workload)
    shown = "" if workload == "log" else f", workload {workload}"
    click.echo(
        f"{data['seeds']} seeds, {nodes} nodes, scenario {scenario}{shown}: "
        f"{data['violations']} violations, {data['livelocks']} livelocks; "
        f"{data['commands_committed']} commands committed, {data['reads_served']} reads, "
        f"{data['faults']} faults, {data['steps']} ticks, {data['deliveries']} deliveries "
        f"({data['deliveries_per_second_per_core']}/s per core); ticks to commit "
        f"p50 {data['ticks_to_commit_p50']}, p99 {data['ticks_to_commit_p99']}, "
        f"max {data['ticks_to_commit_max']}"
    )
    for failed in summary.failed:
        click.echo(f"reproduce: {failed.reproduce()}")
    if show_coverage:
        counts = dict(summary.coverage)
        expected = coverage.expected(workload)
        for name in expected:
            mark = "" if counts.get(name) else "   <- never reached"
            click.echo(f"  {name:40} {counts.get(name, 0):>10}{mark}")
        for name in sorted(set(counts) - set(expected)):
            click.echo(f"  {name:40} {counts[name]:>10}")
    if as_json:
        click.echo(json.dumps(data))
    sys.exit(0 if summary.ok else 1)


@click.command()
@click.option("--duration", default=60.0, show_default=True, type=click.FloatRange(min=1))
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(3, 7))
@click.option(
    "--nemesis",
    help="Comma-separated fault kinds: kill, crash, pause, partition, delay, loss (packet "
    "loss, needs root and nftables), power (power cuts that lose every unsynced write, needs "
    "root and FUSE).  [default: every kind this machine can inject]",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--clients", default=10, show_default=True, type=click.IntRange(1, 256))
@click.option("--keys", default=8, show_default=True, type=click.IntRange(1, 10_000))
@click.option(
    "--pace",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Scale the gaps between faults and how long each lasts (0.5: twice as many faults).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write history.jsonl, node logs, summary.json and timeline.png here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, last line.")
@click.option(
    "--lazy-fs/--no-lazy-fs",
    default=None,
    help="Put every data dir on a lazy mount (FUSE; slower).  [default: only with power]",
)
@click.option("--storage", type=click.Choice(["sqlite", "lmdb"]), help="The nodes' storage engine.")
@click.option(
    "--tls",
    is_flag=True,
    help="Mutual TLS between nodes and TLS clients (certificates made for the run).",
)
@click.option("--test-bug", hidden=True, help="Run deliberately broken nodes (must fail).")
def chaos(
    duration: float,
    nodes: int,
    nemesis: str | None,
    seed: int,
    clients: int,
    keys: int,
    pace: float,
    out: Path | None,
    as_json: bool,
    lazy_fs: bool | None,
    storage: str | None,
    tls: bool,
    test_bug: str | None,
) -> None:
    """Real processes under faults; judged only by what clients saw.

    Checks that the history is linearizable, that no acknowledged write was lost and that
    every replica reached the same state digest. Exit status 0 only when all three hold.
    """
    import asyncio

    from pyxos.chaos.nemesis import KINDS, available_kinds, unavailable
    from pyxos.chaos.power import unavailable_reason as lazy_unavailable
    from pyxos.chaos.runner import ChaosConfig, run_chaos

    if nemesis is None:
        kinds = available_kinds()
    else:
        kinds = tuple(k.strip() for k in nemesis.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"unknown nemesis {bad}; choose from {', '.join(KINDS)}")
    for kind in kinds:
        if (reason := unavailable(kind)) is not None:
            raise click.BadParameter(f"the {kind} nemesis is not available here: {reason}")
    if lazy_fs is False and "power" in kinds:
        raise click.BadParameter("the power nemesis needs --lazy-fs")
    if lazy_fs and (reason := lazy_unavailable()) is not None:
        raise click.BadParameter(f"--lazy-fs is not available here: {reason}")
    cfg = ChaosConfig(
        duration=duration,
        nodes=nodes,
        nemesis=kinds,
        seed=seed,
        workers=clients,
        keys=keys,
        pace=pace,
        out=out,
        test_bug=test_bug,
        lazy_fs=lazy_fs,
        tls=tls,
        storage=storage,
    )
    report = asyncio.run(run_chaos(cfg))
    data = report.as_dict()
    click.echo(
        f"{data['ops']} ops ({data['ok']} ok, {data['fail']} failed, {data['unknown']} unknown) "
        f"in {data['duration_s']}s under {data['faults']} faults"
        + (" (data dirs on lazy mounts)" if report.lazy_fs else "")
    )
    for fault in report.faults:
        click.echo(
            f"  {fault['start_s']:>7}s-{fault['end_s']:>7}s  {fault['kind']:<9} "
            f"{fault['detail']:<34} no success for {fault['longest_ok_gap_s']}s, "
            f"first success {fault['recovery_s']}s after healing"
        )
    click.echo(
        f"linearizable: {report.linearizable} (checker: {report.checker_verdict}, "
        f"{data['check_seconds']}s)"
    )
    if report.checker_explanation:
        click.echo(report.checker_explanation)
    click.echo(
        f"acknowledged unique writes lost: {report.lost_acked_writes} "
        f"of {report.acked_unique_writes}"
    )
    click.echo(f"replicas converged: {report.converged}")
    for node, reason in report.down_nodes.items():
        click.echo(f"node {node} did not come back: {reason}" if node else reason)
    for problem in report.nemesis_errors:
        click.echo(f"nemesis: {problem}")
    if report.out:
        click.echo(f"history, logs and timeline.png in {report.out}")
    click.echo("verdict: " + ("PASS" if report.passed else "FAIL"))
    if as_json:
        click.echo(json.dumps(data))
    sys.exit(0 if report.passed else 1)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Check a history file for linearizability: pyxos check FILE [--timeout S] [--json].

    Exit status 0 when linearizable, 1 on a violation, 2 when undecided or unreadable.
    """
    from pyxos.check.cli import main as check_main

    sys.exit(check_main(list(args)))
