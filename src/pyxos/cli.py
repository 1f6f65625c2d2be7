"""The ``pyxos`` command line.

Every ``--json`` prints one JSON object as the last line of output, and every command's
exit status is 0 only when everything it checked holds.
"""

from __future__ import annotations

import json
import sys

import click

from pyxos.sim.runner import SCENARIOS, SeedResult
from pyxos.sim.swarm import run_swarm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pyxos")
def main() -> None:
    """pyxos: Multi-Paxos state machine replication and a replicated key-value store."""


@main.command()
@click.option("--seeds", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--start-seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option(
    "--scenario",
    default="random",
    show_default=True,
    type=click.Choice(SCENARIOS),
    help="random: swarm of crashes, partitions, loss, duplication and delay; "
    "duelling: two or three nodes start phase 1 at the same tick, again and again.",
)
@click.option("--jobs", default=0, help="Processes to use (default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line.")
def sim(seeds: int, start_seed: int, nodes: int, scenario: str, jobs: int, as_json: bool) -> None:
    """Deterministic simulation of a whole cluster under a seeded fault schedule.

    Checks after every step that at most one value is chosen per slot, that applied
    sequences are prefixes of each other, that no promise or acceptance goes backwards
    (also across restarts), that only proposed commands are chosen, that reads are
    linearizable and that acknowledged commands stay; then heals every fault and requires
    all pending commands to commit within a tick budget. Exit status 1 on any failure,
    printing the command that reproduces it.
    """

    def report(result: SeedResult) -> None:
        if not result.ok:
            what = result.violation or f"livelock: {result.livelock}"
            click.echo(f"seed {result.seed} FAILED: {what}", err=True)
            click.echo(f"  reproduce: {result.reproduce()}", err=True)

    summary = run_swarm(
        range(start_seed, start_seed + seeds), nodes, scenario, jobs=jobs or None, on_result=report
    )
    data = summary.as_json(nodes, scenario, start_seed)
    click.echo(
        f"{data['seeds']} seeds, {nodes} nodes, scenario {scenario}: "
        f"{data['violations']} violations, {data['livelocks']} livelocks; "
        f"{data['commands_committed']} commands committed, {data['reads_served']} reads, "
        f"{data['faults']} faults, {data['steps']} ticks, {data['deliveries']} deliveries "
        f"({data['deliveries_per_second_per_core']}/s per core); ticks to commit "
        f"p50 {data['ticks_to_commit_p50']}, p99 {data['ticks_to_commit_p99']}, "
        f"max {data['ticks_to_commit_max']}"
    )
    for failed in summary.failed:
        click.echo(f"reproduce: {failed.reproduce()}")
    if as_json:
        click.echo(json.dumps(data))
    sys.exit(0 if summary.ok else 1)


@main.command()
@click.option("--seeds", default=200, show_default=True, type=click.IntRange(min=1))
def demo(seeds: int) -> None:
    """Show the protocol at work: simulated clusters under faults, then duelling proposers.

    (The live 3-node cluster demo replaces this once the service exists.)
    """
    ok = True
    for nodes, scenario in ((3, "random"), (5, "random"), (3, "duelling")):
        click.echo(f"simulating {seeds} seeded runs of {nodes} nodes, scenario {scenario} ...")
        summary = run_swarm(range(seeds), nodes, scenario)
        data = summary.as_json(nodes, scenario, 0)
        click.echo(
            f"  {data['commands_committed']} commands committed and {data['reads_served']} "
            f"linearizable reads under {data['faults']} faults; violations "
            f"{data['violations']}, livelocks {data['livelocks']}; ticks to commit p50 "
            f"{data['ticks_to_commit_p50']}, p99 {data['ticks_to_commit_p99']}"
        )
        ok &= summary.ok
    click.echo("verdict: " + ("every invariant held" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
