"""`pyxos member` and `pyxos leader` on real processes with ACL users: they log in with
--user/--password, a user without @admin may list but not change, a wrong password
changes nothing, and a leader transfer by an admin moves the leader mark `member list`
shows."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from procs import client, leader, wait_until

from pyxos.cli import main
from pyxos.launch.local_cluster import LocalCluster


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_member_commands_log_in_and_respect_acl(local_cluster: LocalCluster) -> None:
    first = leader(local_cluster)
    eps = ",".join(f"127.0.0.1:{local_cluster.client_port(k)}" for k in local_cluster.ids)
    r = client(local_cluster, first)
    r.execute_command("ACL", "SETUSER", "ops", "on", ">pw", "+@all", "-@admin", "+paxos|members")
    r.execute_command("ACL", "SETUSER", "boss", "on", ">root", "+@all")
    wait_until(
        lambda: all(
            b"ops" in client(local_cluster, k).execute_command("ACL", "USERS")
            for k in local_cluster.ids
        ),
        10.0,
        "the users on every node",
    )

    ops = ("--user", "ops", "--password", "pw", "--endpoints", eps)
    listed = cli("member", "list", "--json", *ops)
    assert listed.exit_code == 0, listed.output
    view = json.loads(listed.output)
    assert view["version"] == 0
    assert sorted(m["id"] for m in view["members"]) == [1, 2, 3]

    refused = cli("member", "remove", "--id", "3", *ops)
    assert refused.exit_code == 1 and "NOPERM" in refused.stderr
    wrong = cli(
        "member", "remove", "--id", "3", "--user", "ops", "--password", "x", "--endpoints", eps
    )
    assert wrong.exit_code == 1 and "WRONGPASS" in wrong.stderr
    assert len(json.loads(cli("member", "list", "--json", *ops).output)["members"]) == 3

    to = next(k for k in local_cluster.ids if k != first)
    boss = ("--user", "boss", "--password", "root", "--endpoints", eps)
    moved = cli("leader", "transfer", "--to", str(to), "--json", *boss)
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output) == {"leader": to}
    assert leader(local_cluster) == to
    rows = json.loads(cli("member", "list", "--json", *boss).output)["members"]
    assert [m["id"] for m in rows if m["leader"]] == [to]

    again = cli("member", "add", "--id", str(to), "--peer", "127.0.0.1:9", *boss)
    assert again.exit_code == 1
    assert f"node {to} is already a member (voter)" in again.stderr
