"""``pyxos demo`` and ``pyxos certs``: a guided tour of a cluster, and certificates for TLS."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pyxos.runtime.config import ConfigError

__all__ = ["certs", "demo"]


@click.command()
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


@click.command()
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
