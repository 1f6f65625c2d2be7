"""``pyxos serve``, ``pyxos cluster`` and ``pyxos status``: running nodes and looking at them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from pyxos.runtime.config import ConfigError

__all__ = ["cluster", "serve", "status"]


@click.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file with any of these settings (flags win).",
)
@click.option("--id", "node_id", type=int, help="This node's id (1..n).")
@click.option("--cluster", help="Every founding member's peer address: 1=host:port,2=host:port,...")
@click.option(
    "--join",
    help="Start a node added with `pyxos member add`: peer addresses (host:port,...) of "
    "current members; it learns the membership from them (instead of --cluster).",
)
@click.option("--peer", help="With --join: this node's own peer address (host:port).")
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
@click.option("--aclfile", help="Users to start with, in Redis's ACL file format.")
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

    A node added to a running cluster (`pyxos member add --id 4 --peer 10.0.0.4:7380`):

      pyxos serve --id 4 --join 10.0.0.1:7380,10.0.0.2:7380 --peer 10.0.0.4:7380
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


@click.command()
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


@click.command()
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
