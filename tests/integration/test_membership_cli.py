"""Membership on real processes: PAXOS, the admin routes, `pyxos member`, `serve --join`,
and a rolling restart of every node under load with zero failed writes at the client."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from procs import FAST, client, leader, wait_until

from pyxos.cli import main
from pyxos.client import Client
from pyxos.launch.local_cluster import LocalCluster, free_ports


def endpoints(cluster: LocalCluster, ids: list[int] | None = None) -> str:
    return ",".join(f"127.0.0.1:{cluster.client_port(k)}" for k in ids or cluster.ids)


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def members(cluster: LocalCluster, ids: list[int] | None = None) -> list[dict[str, Any]]:
    result = cli("member", "list", "--endpoints", endpoints(cluster, ids), "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output.strip().splitlines()[-1])["members"]
    return rows


class Writer(threading.Thread):
    """SETs unique keys through the pyxos client; every failure the client raises counts."""

    def __init__(self, eps: str) -> None:
        super().__init__(daemon=True)
        self.eps = eps
        self.acked: list[int] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.eps, timeout=5.0, attempts=10) as c:
            i = 0
            while not self.stop.is_set():
                try:
                    c.set(f"k{i}", i)
                    self.acked.append(i)
                except Exception as exc:
                    self.failures.append(repr(exc))
                i += 1

    def wait_for(self, more: int) -> None:
        target = len(self.acked) + more
        wait_until(lambda: len(self.acked) >= target, 30.0, f"{more} more writes")


def test_paxos_command_replies_and_refusals(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    for protocol in (2, 3):
        r = client(local_cluster, 1, protocol=protocol)
        rows = r.execute_command("PAXOS", "MEMBERS")
        if protocol == 2:
            rows = [dict(zip(row[::2], row[1::2], strict=True)) for row in rows]
        assert sorted(row[b"id"] for row in rows) == [1, 2, 3]
        assert {row[b"role"] for row in rows} == {b"voter"}
        assert sum(row[b"leader"] for row in rows) == 1
    r = client(local_cluster, 2)
    for args, message in [
        (("ADD", 2, "127.0.0.1:1"), "node 2 is already a member (voter)"),
        (("PROMOTE", 9), "node 9 is not a member"),
        (("REMOVE", 0), "node ids are positive integers"),
        (("ADD", 9, "nowhere"), "bad peer address"),
        (("TRANSFER", 9), "not a voter"),
        (("NOPE",), "unknown subcommand"),
        (("ADD", 9), "wrong number of arguments"),
    ]:
        with pytest.raises(redis.ResponseError, match=re.escape(message)):
            r.execute_command("PAXOS", *args)
    info = r.info("paxos")
    assert info["voters"] in ("1,2,3", [1, 2, 3])  # redis-py parses the list
    assert info["member_1"]["role"] == "voter"
    assert int(info["membership_version"]) == 0
    # A user without @admin may read the members but not change them.
    r.execute_command("ACL", "SETUSER", "ops", "on", ">pw", "+@all", "-@admin", "+paxos|members")
    ops = client(local_cluster, 2, username="ops", password="pw")
    assert ops.execute_command("PAXOS", "MEMBERS")
    with pytest.raises(redis.exceptions.NoPermissionError):
        ops.execute_command("PAXOS", "REMOVE", 3)


def test_admin_members_routes(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    base = f"http://127.0.0.1:{local_cluster.admin_port(1)}"
    with urllib.request.urlopen(f"{base}/members", timeout=10) as resp:
        body = json.loads(resp.read())
    assert sorted(m["id"] for m in body["members"]) == [1, 2, 3] and body["version"] == 0

    def post(path: str, data: bytes, method: str = "POST") -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"{base}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()
            return exc.code, json.loads(text) if text.startswith(b"{") else {}

    assert post("/members", b'{"id": 1, "peer": "127.0.0.1:5"}') == (
        409,
        {"error": "node 1 is already a member (voter)"},
    )
    assert post("/members", b"not json")[0] == 400
    assert post("/members", b"x" * 5000)[0] == 413
    assert post("/members/7/promote", b"")[0] == 409
    status, body = post("/leader/transfer", json.dumps({"to": 9}).encode())
    assert status == 409 and "not a voter" in body["error"]


def test_grow_by_join_then_rolling_restart_with_zero_failed_writes(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    leader(local_cluster)
    eps = endpoints(local_cluster)
    writer = Writer(eps)
    writer.start()
    writer.wait_for(50)

    # Add node 4 with `pyxos member add`, start it with the command line it prints.
    peer_port, client_port, admin_port = free_ports(3)
    result = cli(
        "member", "add", "--id", "4", "--peer", f"127.0.0.1:{peer_port}", "--endpoints", eps
    )
    assert result.exit_code == 0, result.output
    printed = next(line.strip() for line in result.output.splitlines() if "pyxos serve" in line)
    argv = printed.split()[2:]  # after "pyxos serve"
    argv = [
        {
            "PORT": str(client_port),
            "ADMIN_PORT": str(admin_port),
            "EMPTY_DIR": str(tmp_path / "n4"),
        }.get(a, a)
        for a in argv
    ]
    log = open(tmp_path / "n4.log", "ab")  # noqa: SIM115
    node4 = subprocess.Popen(
        [sys.executable, "-m", "pyxos", "serve", *argv, *FAST], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(
            lambda: any(r["id"] == 4 and r["role"] == "voter" for r in members(local_cluster)),
            60.0,
            "node 4 a voter",
        )
        writer.wait_for(50)

        # Rolling restart of the founding nodes: transfer away, restart, catch up, next.
        for k in local_cluster.ids:
            lid = leader(local_cluster, list(local_cluster.ids))
            if lid == k:
                to = next(i for i in local_cluster.ids if i != k)
                done = cli("leader", "transfer", "--to", str(to), "--endpoints", eps)
                assert done.exit_code == 0, done.output
                assert leader(local_cluster) == to
            local_cluster.stop(k)
            local_cluster.start(k)
            local_cluster.wait_ready(k)

            def caught_up(k: int = k) -> bool:
                rows = members(local_cluster, [leader(local_cluster)])  # the leader knows
                return any(r["id"] == k and r["caught_up"] for r in rows)

            wait_until(caught_up, 60.0, f"node {k} caught up")
            writer.wait_for(30)

        # Shrink back: remove node 4; its process stops by itself and says why.
        done = cli("member", "remove", "--id", "4", "--endpoints", eps)
        assert done.exit_code == 0, done.output
        assert node4.wait(30) != 0
        assert "removed from the cluster" in (tmp_path / "n4.log").read_text()
        writer.wait_for(30)
    finally:
        writer.stop.set()
        writer.join(30)
        if node4.poll() is None:
            node4.kill()
        log.close()
    assert writer.failures == []
    assert len(writer.acked) > 250
    r = client(local_cluster, 1)
    for i in writer.acked[:: max(1, len(writer.acked) // 50)]:
        assert r.get(f"k{i}") == str(i).encode()  # nothing acknowledged was lost
    assert sorted(r["id"] for r in members(local_cluster)) == [1, 2, 3]


def test_member_cli_refusals_exit_1(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    eps = endpoints(local_cluster)
    result = cli("member", "add", "--id", "3", "--peer", "127.0.0.1:9", "--endpoints", eps)
    assert result.exit_code == 1 and "already a member" in result.output
    result = cli("member", "promote", "--id", "8", "--endpoints", eps)
    assert result.exit_code == 1 and "not a member" in result.output
    result = cli("member", "list", "--endpoints", "127.0.0.1:1")
    assert result.exit_code == 1 and "no endpoint answered" in result.output
    table = cli("member", "list", "--endpoints", eps)
    assert table.exit_code == 0 and "voter" in table.output
