"""Standard Redis clients against a real 3-node cluster."""

from __future__ import annotations

import subprocess

import pytest
import redis
from procs import client, leader

from pyxos.launch.local_cluster import LocalCluster


def test_redis_py_commands_through_every_node(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r1, r2, r3 = (client(local_cluster, k) for k in (1, 2, 3))
    assert r1.set("k", "v") is True
    assert r2.get("k") == b"v"
    assert r3.incr("n") == 1 and r1.incrby("n", 41) == 42 and r2.decr("n") == 41
    assert r3.set("k", "w", nx=True) is None
    assert r1.set("k", "w", xx=True, get=True) == b"v"
    assert r2.execute_command("CAS", "k", "w", "x") == 1
    assert r3.execute_command("CAS", "k", "w", "y") == 0
    assert r1.mset({"a": "1", "b": "2"}) is True
    assert r2.mget("a", "b", "missing") == [b"1", b"2", None]
    assert r3.exists("a", "b", "missing") == 2
    assert r1.delete("a", "missing") == 1
    assert r2.dbsize() == 3
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r3.incr("k")
    with pytest.raises(redis.ResponseError, match="unknown command 'FOO'"):
        r1.execute_command("FOO", "bar")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r1.execute_command("GET")


def test_pipelined_commands_are_answered_in_order(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    pipe = client(local_cluster, 2).pipeline(transaction=False)
    for _ in range(200):
        pipe.incr("counter")
        pipe.get("counter")
    replies = pipe.execute()
    assert replies[0::2] == list(range(1, 201))
    assert replies[1::2] == [str(i).encode() for i in range(1, 201)]


def test_resp3_hello_and_info(local_cluster: LocalCluster) -> None:
    lid = leader(local_cluster)
    r = client(local_cluster, 1, protocol=3)
    assert r.set("x", "1") is True
    assert r.get("x") == b"1"
    info = client(local_cluster, lid).info()
    assert info["process_id"] > 0
    assert info["role"] in ("master", "leader")
    paxos = client(local_cluster, 1).info("paxos")
    assert paxos["leader_id"] == lid
    assert paxos["role"] in ("leader", "follower", "candidate")
    assert paxos["commit_index"] >= paxos["applied_index"] >= 1


def test_redis_cli_unchanged(local_cluster: LocalCluster, redis_cli: str) -> None:
    leader(local_cluster)

    def cli(*args: str) -> str:
        port = str(local_cluster.client_port(2))
        out = subprocess.run(
            [redis_cli, "-p", port, *args], capture_output=True, timeout=20, check=False
        )
        return out.stdout.decode().strip()

    assert cli("SET", "greeting", "hello world") == "OK"
    assert cli("GET", "greeting") == "hello world"
    assert cli("INCR", "c") == "1"
    assert cli("FOO", "a") == "ERR unknown command 'FOO', with args beginning with: 'a'"
    assert "node_id:2" in cli("INFO", "paxos")
    assert cli("PING") == "PONG"


def test_password_is_required_when_configured(tmp_path: object) -> None:
    from pathlib import Path

    from procs import FAST

    from pyxos.launch.local_cluster import find_base_port

    cluster = LocalCluster(
        1, find_base_port(1), Path(str(tmp_path)) / "c", extra_args=[*FAST, "--password", "s3cret"]
    )
    cluster.start()
    try:
        cluster.wait_ready()
        plain = client(cluster, 1)
        with pytest.raises(redis.AuthenticationError):
            plain.get("x")
        with pytest.raises(redis.AuthenticationError):
            client(cluster, 1, password="wrong").ping()
        authed = client(cluster, 1, password="s3cret")
        assert authed.set("x", "1") is True
        assert authed.get("x") == b"1"
    finally:
        cluster.close()
