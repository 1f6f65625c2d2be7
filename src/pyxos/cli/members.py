"""``pyxos member list|add|promote|remove`` and ``pyxos leader transfer``.

Each asks any node at ``--endpoints`` (client addresses) with the ``PAXOS`` command
(:mod:`pyxos.server.paxos_commands`); the node forwards a change to the leader and answers
once it is chosen and in effect. A refusal prints the cluster's reason on stderr and
exits with status 1. ``--user``/``--password`` (or ``$PYXOS_PASSWORD``) log in first, for
nodes started with ``--password`` or an ACL file.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

__all__ = ["leader", "member"]

ENDPOINTS = click.option(
    "--endpoints",
    default="127.0.0.1:6380,127.0.0.1:6381,127.0.0.1:6382",
    show_default=True,
    help="Client addresses of any nodes, comma-separated (the first that answers is asked).",
)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _credentials(command: Callable[..., None]) -> Callable[..., None]:
    """``--user`` and ``--password``: AUTH before the command, as ``redis-cli --user``
    (needed on a node started with ``--password`` or an ACL file; ``PAXOS`` changes need
    a user with ``@admin``)."""

    @functools.wraps(command)
    def run(*args: Any, user: str | None, password: str | None, **kwargs: Any) -> None:
        from pyxos.client.members import auth_command

        click.get_current_context().meta[_AUTH] = auth_command(user, password)
        command(*args, **kwargs)

    run = click.option(
        "--password",
        envvar="PYXOS_PASSWORD",
        help="AUTH with this password first (or $PYXOS_PASSWORD).",
    )(run)
    return click.option("--user", help="AUTH as this ACL user (with --password).")(run)


_AUTH = "pyxos.members.auth"


def _auth() -> list[bytes] | None:
    auth: list[bytes] | None = click.get_current_context().meta.get(_AUTH)
    return auth


def _run(endpoints: str, *args: str | int) -> Any:
    from pyxos.client.members import call

    return _asking(lambda: call(endpoints, *args, auth=_auth()))


def _asking(ask: Callable[[], Any]) -> Any:
    """``ask()``, or the reason it failed on stderr and exit status 1."""
    from pyxos.client.members import MemberCommandError

    try:
        return ask()
    except MemberCommandError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    except (ConnectionError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _show(rows: list[dict[str, Any]], as_json: bool, version: int | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"version": version, "members": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pyxos members" + (f" (version {version})" if version is not None else ""))
    for col in ("id", "peer address", "role", "caught up", "behind", "leader"):
        table.add_column(col, no_wrap=col == "peer address")
    for r in rows:
        caught = "?" if r["caught_up"] is None else "yes" if r["caught_up"] else "no"
        behind = "?" if r["behind"] is None else str(r["behind"])
        table.add_row(
            str(r["id"]), r["address"], r["role"], caught, behind, "*" if r["leader"] else ""
        )
    Console().print(table)


def _changed(as_json: bool, what: str) -> Callable[[Any], None]:
    def report(reply: Any) -> None:
        from pyxos.client.members import rows_of

        fields = dict(zip(reply[::2], reply[1::2], strict=True))
        rows = rows_of(fields[b"members"])
        if as_json:
            click.echo(json.dumps({"slot": fields[b"slot"], "members": rows}))
        else:
            click.echo(f"{what} (chosen in slot {fields[b'slot']})")

    return report


@click.group()
def member() -> None:
    """List and change the cluster's members (one change at a time)."""


@member.command("list")
@ENDPOINTS
@_credentials
@AS_JSON
def member_list(endpoints: str, as_json: bool) -> None:
    """Every member: id, peer address, voter or learner, caught up, leader mark.

    Whether a member has caught up is known on the leader; asked of another node, the
    column says "?".
    """
    from pyxos.client.members import members

    version, rows = _asking(lambda: members(endpoints, auth=_auth()))
    _show(rows, as_json, version)


@member.command("add")
@click.option("--id", "node_id", type=int, required=True, help="The new node's id.")
@click.option("--peer", required=True, help="The new node's peer address, HOST:PORT.")
@click.option("--learner", is_flag=True, help="Keep it a learner (else it votes once caught up).")
@ENDPOINTS
@_credentials
@AS_JSON
def member_add(node_id: int, peer: str, learner: bool, endpoints: str, as_json: bool) -> None:
    """Add a node; print the command line that starts it.

    The node joins as a learner: it receives a snapshot and the log and counts in no
    quorum. Without --learner the leader makes it a voter once it has caught up.
    """
    args: list[str | int] = ["ADD", node_id, peer]
    if learner:
        args.append("LEARNER")
    reply = _run(endpoints, *args)
    from pyxos.client.members import rows_of

    fields = dict(zip(reply[::2], reply[1::2], strict=True))
    rows = rows_of(fields[b"members"])
    join = ",".join(r["address"] for r in rows if r["role"] == "voter" and r["id"] != node_id)
    command = (
        f"pyxos serve --id {node_id} --join {join} --peer {peer} "
        "--port PORT --admin ADMIN_PORT --data-dir EMPTY_DIR"
    )
    if as_json:
        click.echo(json.dumps({"slot": fields[b"slot"], "members": rows, "start": command}))
        return
    role = "learner" if learner else "learner (a voter once caught up)"
    click.echo(f"node {node_id} added at {peer} as a {role}. Start it with:")
    click.echo(f"  {command}")
    click.echo("(PORT, ADMIN_PORT: its client and admin ports; EMPTY_DIR: a new data dir)")


@member.command("promote")
@click.option("--id", "node_id", type=int, required=True, help="The learner to promote.")
@ENDPOINTS
@_credentials
@AS_JSON
def member_promote(node_id: int, endpoints: str, as_json: bool) -> None:
    """Make a learner a voter (refused while it lags behind the leader)."""
    _changed(as_json, f"node {node_id} is a voter")(_run(endpoints, "PROMOTE", node_id))


@member.command("remove")
@click.option("--id", "node_id", type=int, required=True, help="The node to remove.")
@ENDPOINTS
@_credentials
@AS_JSON
def member_remove(node_id: int, endpoints: str, as_json: bool) -> None:
    """Remove a node; the leader hands leadership off first if it is the one.

    The removed node stops by itself and logs why.
    """
    _changed(as_json, f"node {node_id} is removed")(_run(endpoints, "REMOVE", node_id))


@click.group()
def leader() -> None:
    """Move the cluster's leadership."""


@leader.command("transfer")
@click.option("--to", "to", type=int, required=True, help="The voter to hand leadership to.")
@ENDPOINTS
@_credentials
@AS_JSON
def leader_transfer(to: int, endpoints: str, as_json: bool) -> None:
    """Hand leadership to an up-to-date voter (before maintenance, a rolling restart)."""
    now = _run(endpoints, "TRANSFER", to)
    if as_json:
        click.echo(json.dumps({"leader": now}))
    else:
        click.echo(f"node {now} leads")
