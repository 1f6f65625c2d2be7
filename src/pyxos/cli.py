"""The ``pyxos`` command line.

Every ``--json`` prints one JSON object as the last line of output, and every command's
exit status is 0 only when everything it checked holds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from pyxos.runtime.config import ConfigError
from pyxos.sim import coverage
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
    Exit status 1 on any failure, printing the command that reproduces it.
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
    if show_coverage:
        counts = dict(summary.coverage)
        for name in coverage.expected():
            mark = "" if counts.get(name) else "   <- never reached"
            click.echo(f"  {name:40} {counts.get(name, 0):>10}{mark}")
        for name in sorted(set(counts) - set(coverage.expected())):
            click.echo(f"  {name:40} {counts[name]:>10}")
    if as_json:
        click.echo(json.dumps(data))
    sys.exit(0 if summary.ok else 1)


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file with any of these settings (flags win).",
)
@click.option("--id", "node_id", type=int, help="This node's id (1..n).")
@click.option("--cluster", help="Every member's peer address: 1=host:port,2=host:port,...")
@click.option(
    "--port",
    type=int,
    help="Client (Redis protocol) port; 0 turns it off (with --tls-port).  [default: 6380]",
)
@click.option("--host", help="Client port bind address.  [default: 127.0.0.1]")
@click.option("--admin", type=int, help="Admin HTTP port (/metrics, /status, /health).")
@click.option("--admin-host", help="Admin port bind address.  [default: 127.0.0.1]")
@click.option("--max-clients", type=int, help="Refuse clients beyond this many.  [default: 10000]")
@click.option("--data-dir", help="Where this node keeps its log and snapshots.")
@click.option(
    "--storage",
    type=click.Choice(["sqlite", "lmdb"]),
    help="Storage engine of a new data dir; an existing one keeps the engine it was made "
    "with.  [default: sqlite]",
)
@click.option("--cluster-id", help="Name shared by the members; peers from another are refused.")
@click.option("--secret", envvar="PYXOS_SECRET", help="Shared peer secret (or $PYXOS_SECRET).")
@click.option("--password", envvar="PYXOS_PASSWORD", help="Require AUTH with this password.")
@click.option("--tls-port", type=int, help="Client port speaking TLS (as Redis's tls-port).")
@click.option(
    "--tls-cert-file",
    help="This node's certificate (PEM), shown to clients, peers and admin callers.",
)
@click.option("--tls-key-file", help="The certificate's private key (PEM).")
@click.option(
    "--tls-key-file-pass",
    envvar="PYXOS_TLS_KEY_FILE_PASS",
    help="Password of an encrypted key (or $PYXOS_TLS_KEY_FILE_PASS).",
)
@click.option(
    "--tls-ca-cert-file", help="CA certificate(s) that client and peer certificates must chain to."
)
@click.option(
    "--tls-auth-clients",
    type=click.Choice(["yes", "no", "optional"]),
    help="Client certificates on the TLS port: required, not asked for, or verified when "
    "given.  [default: yes]",
)
@click.option(
    "--tls-cluster",
    type=click.Choice(["yes", "no"]),
    help="Mutual TLS between nodes: each certificate must name its node (node-N.CLUSTER_ID, "
    "or its peer host).  [default: no]",
)
@click.option(
    "--admin-tls",
    type=click.Choice(["yes", "no"]),
    help="Admin HTTP over TLS with the same files; beyond /health it then needs a client "
    "certificate or --admin-token.  [default: no]",
)
@click.option(
    "--admin-token",
    envvar="PYXOS_ADMIN_TOKEN",
    help="Bearer token required beyond /health on the admin port (or $PYXOS_ADMIN_TOKEN).",
)
@click.option("--tick-ms", type=float, help="Protocol tick.  [default: 10]")
@click.option("--election-ms", type=float, help="Minimum election timeout.  [default: 300]")
@click.option("--heartbeat-ms", type=float, help="Leader heartbeat interval.  [default: 50]")
@click.option("--snapshot-every", type=int, help="Slots between snapshots.  [default: 50000]")
@click.option("--request-timeout", type=float, help="Seconds a command may wait.  [default: 5]")
@click.option("--log-level", help="debug, info, warning, error.  [default: info]")
@click.option("--log-json", is_flag=True, default=None, help="One JSON object per log line.")
@click.option("--test-bug", hidden=True, help="Deliberately unsafe behaviour, for chaos tests.")
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run one node: the replica, its Redis client port and its admin port.

    Example, node 1 of 3:

      pyxos serve --id 1 --cluster 1=10.0.0.1:7380,2=10.0.0.2:7380,3=10.0.0.3:7380
      --port 6380 --admin 8380 --data-dir /var/lib/pyxos

    With TLS everywhere (certificates from `pyxos certs`), add: --port 0 --tls-port 6380
    --tls-cert-file certs/node1.crt --tls-key-file certs/node1.key --tls-ca-cert-file
    certs/ca.crt --tls-cluster yes --admin-tls yes. SIGHUP re-reads the TLS files.
    """
    from pyxos.launch.process import ServeSettings, run

    values: dict[str, Any] = {}
    try:
        if config_file is not None:
            values.update(ServeSettings.from_toml(config_file))
        values.update(
            {("id" if k == "node_id" else k): v for k, v in flags.items() if v is not None}
        )
        settings = ServeSettings(**values)
        settings.node_config()
    except (ConfigError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    sys.exit(run(settings))


@main.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option("--port", default=6380, show_default=True, help="Node k serves clients on PORT+k-1.")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--storage",
    type=click.Choice(["sqlite", "lmdb"]),
    help="Storage engine of every node.  [default: sqlite for new data dirs]",
)
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="TLS everywhere with the files of `pyxos certs` in this directory (made there when "
    "missing): mutual TLS between nodes, TLS admin, TLS clients on PORT+3000+k-1 and no "
    "plain-text client port.",
)
def cluster(
    nodes: int, port: int, data_dir: Path, storage: str | None, tls_dir: Path | None
) -> None:
    """Run a local cluster in the foreground until Ctrl-C.

    Node k serves clients on PORT+k-1, peers on PORT+1000+k-1 and admin HTTP on
    PORT+2000+k-1; logs go to DATA_DIR/nodeK.log.
    """
    import signal

    from pyxos.launch.local_cluster import LocalCluster

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # run the finally below: never orphan the node processes

    signal.signal(signal.SIGTERM, stop)
    args = ["--storage", storage] if storage else []
    if tls_dir is not None and not (tls_dir / "ca.crt").exists():
        from pyxos.certs import make_dev_certs

        make_dev_certs(tls_dir, dict.fromkeys(range(1, nodes + 1), "127.0.0.1"))
        click.echo(f"made a development CA and certificates in {tls_dir}")
    local = LocalCluster(nodes, port, data_dir, extra_args=args, tls_dir=tls_dir)
    local.plain_port = tls_dir is None
    local.start()
    try:
        local.wait_ready()
        for k in local.ids:
            if tls_dir is None:
                click.echo(
                    f"node {k}: redis-cli -p {local.client_port(k)}   "
                    f"http://127.0.0.1:{local.admin_port(k)}/status   log {data_dir}/node{k}.log"
                )
                continue
            flags = f"--cacert {tls_dir}/ca.crt --cert {tls_dir}/client.crt"
            click.echo(
                f"node {k}: redis-cli --tls {flags} --key {tls_dir}/client.key "
                f"-p {local.tls_port(k)}\n        curl {flags} --key {tls_dir}/client.key "
                f"https://127.0.0.1:{local.admin_port(k)}/status   log {data_dir}/node{k}.log"
            )
        click.echo("Ctrl-C stops the cluster.")
        while all(local.running(k) for k in local.ids):
            time.sleep(0.5)
        click.echo("a node exited; stopping the cluster", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        local.close()


@main.command()
@click.option(
    "--endpoints",
    default="127.0.0.1:6380,127.0.0.1:6381,127.0.0.1:6382",
    show_default=True,
    help="Client addresses, comma-separated.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def status(endpoints: str, as_json: bool) -> None:
    """A table of every node's role, standing, leader, ballot, commit and applied index.

    A node that does not vote (a new data dir not yet registered, or a learner whose
    earlier data dir the cluster remembers) says why below the table.
    """
    from pyxos.client.status import fetch_status

    rows = fetch_status(endpoints)
    if as_json:
        click.echo(json.dumps(rows))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="pyxos cluster")
        columns = ("endpoint", "node", "role", "standing", "leader", "ballot", "commit", "applied")
        for col in columns:
            # The endpoint is what a reader needs whole; the rest may fold on a narrow
            # terminal.
            table.add_column(col, no_wrap=col == "endpoint", min_width=len(col))
        for row in rows:
            if "error" in row:
                blank = [""] * (len(columns) - 3)
                table.add_row(row["endpoint"], "-", f"[red]{row['error']}[/red]", *blank)
            else:
                table.add_row(
                    row["endpoint"],
                    str(row["node_id"]),
                    row["role"],
                    row["standing"],
                    str(row["leader_id"]),
                    row["ballot"],
                    str(row["commit_index"]),
                    str(row["applied_index"]),
                )
        console = Console()
        console.print(table)
        for row in rows:
            if "reason" in row:
                console.print(f"node {row['node_id']} is a {row['standing']}: {row['reason']}")
    sys.exit(0 if rows and all("error" not in r for r in rows) else 1)


@main.command()
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
    if report.out:
        click.echo(f"history, logs and timeline.png in {report.out}")
    click.echo("verdict: " + ("PASS" if report.passed else "FAIL"))
    if as_json:
        click.echo(json.dumps(data))
    sys.exit(0 if report.passed else 1)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Check a history file for linearizability: pyxos check FILE [--timeout S] [--json].

    Exit status 0 when linearizable, 1 on a violation, 2 when undecided or unreadable.
    """
    from pyxos.check.cli import main as check_main

    sys.exit(check_main(list(args)))


@main.command()
@click.option("--writes", default=4000, show_default=True, type=click.IntRange(min=10))
@click.option("--port", type=int, help="First client port (default: a free range).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: a temporary dir.")
def demo(writes: int, port: int | None, data_dir: Path | None) -> None:
    """Start 3 local nodes, write through them, SIGKILL the leader, restart it, verify.

    Prints the new leader, how long writes stalled, whether every acknowledged write
    survived and whether all replicas reached the same state digest. Exit status 0 only
    when every check held.
    """
    from pyxos.launch.demo import run_demo

    sys.exit(0 if run_demo(writes, port, data_dir) else 1)


@main.command()
@click.option(
    "--out",
    "out_dir",
    default="certs",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write into (created if missing).",
)
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 99))
@click.option(
    "--cluster",
    help="Peer addresses 1=host:port,...: node ids and peer hosts come from it (not --nodes).",
)
@click.option(
    "--cluster-id",
    default="pyxos",
    show_default=True,
    help="Node certificates are named node-N.CLUSTER_ID; use the cluster's --cluster-id.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="Name or IP clients connect to, put in every node certificate (repeatable).  "
    "[default: localhost, 127.0.0.1, ::1]",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    help="Name of a client certificate to make (repeatable).  [default: client]",
)
@click.option("--days", default=825, show_default=True, type=click.IntRange(1, 36500))
@click.option("--new-ca", is_flag=True, help="Make a new CA even if OUT holds one.")
def certs(
    out_dir: Path,
    nodes: int,
    cluster: str | None,
    cluster_id: str,
    hosts: tuple[str, ...],
    clients: tuple[str, ...],
    days: int,
    new_ca: bool,
) -> None:
    """Make a development CA, a certificate and key per node, and a client certificate.

    Writes ca.crt and ca.key, nodeN.crt and nodeN.key for every node, and client.crt and
    client.key (PEM, keys readable by their owner only). A CA already in OUT signs the new
    certificates, so running it again adds nodes or renews certificates under the same CA.
    Then, for node 1:

      pyxos serve --id 1 ... --tls-port 6390 --tls-cert-file certs/node1.crt
      --tls-key-file certs/node1.key --tls-ca-cert-file certs/ca.crt --tls-cluster yes

      redis-cli --tls --cacert certs/ca.crt --cert certs/client.crt --key
      certs/client.key -p 6390 PING
    """
    import re

    from pyxos.certs import DEFAULT_HOSTS, make_dev_certs
    from pyxos.runtime.config import parse_cluster

    if cluster:
        try:
            members = {k: host for k, (host, _port) in parse_cluster(cluster).items()}
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--cluster") from exc
    else:
        members = dict.fromkeys(range(1, nodes + 1), "")
    names = clients or ("client",)
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name == "ca":
            raise click.BadParameter(f"{name!r} is not a usable file name", param_hint="--client")
        if re.fullmatch(r"node\d+", name):
            raise click.BadParameter(
                f"{name!r} would overwrite a node's files", param_hint="--client"
            )
    written = make_dev_certs(
        out_dir,
        members,
        cluster_id=cluster_id,
        hosts=hosts or DEFAULT_HOSTS,
        clients=names,
        days=days,
        new_ca=new_ca,
    )
    what = "reused the CA in" if written.ca_reused else "new CA:"
    click.echo(f"{what} {out_dir}/ca.crt (keep {out_dir}/ca.key off the nodes)")
    for node_id, cert_names in written.nodes.items():
        click.echo(f"node {node_id}: {out_dir}/node{node_id}.crt  names {', '.join(cert_names)}")
    for name in written.clients:
        click.echo(f"client: {out_dir}/{name}.crt")


def _add_bench() -> None:
    from pyxos.benchmark.cli import bench_command

    main.add_command(bench_command, "bench")


_add_bench()

if __name__ == "__main__":
    main()
