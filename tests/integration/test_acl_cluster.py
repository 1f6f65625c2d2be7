"""Users are replicated state: set on one node, in force on every node, closed out when
deleted, never stored as passwords, and still there after a restart of the whole cluster."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import redis
from procs import FAST, client, wait_until

from pyxos.launch.local_cluster import LocalCluster, find_base_port

pytestmark = pytest.mark.integration

SECRET = "pw-7d1f3c-not-in-any-file"


def as_user(cluster: LocalCluster, node: int, user: str, password: str) -> redis.Redis:
    conn = client(cluster, node, username=user, password=password, single_connection_client=True)
    assert conn.ping() is True
    return conn


def noperm(call: object) -> str:
    assert callable(call)
    with pytest.raises(redis.exceptions.NoPermissionError) as info:
        call()
    return str(info.value)


def files_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_users_are_replicated_enforced_everywhere_and_survive_a_restart(tmp_path: Path) -> None:
    cluster = LocalCluster(
        3, find_base_port(3), tmp_path / "c", extra_args=[*FAST, "--snapshot-every", "20"]
    )
    cluster.start()
    try:
        cluster.wait_ready()
        admin = client(cluster, 1)
        assert admin.execute_command(
            "ACL", "SETUSER", "alice", "on", f">{SECRET}", "~app:*", "+@all", "-@dangerous"
        ) in (b"OK", "OK", True)
        # Right after the acknowledgement, the user works on the other nodes.
        alice2 = as_user(cluster, 2, "alice", SECRET)
        alice3 = as_user(cluster, 3, "alice", SECRET)
        assert alice3.execute_command("ACL", "WHOAMI") == b"alice"
        assert alice3.set("app:1", "v") is True
        assert alice2.get("app:1") == b"v"
        assert "no permissions to access one of the keys" in noperm(lambda: alice3.get("other"))
        assert "'flushall' command" in noperm(alice2.flushall)
        with pytest.raises(redis.AuthenticationError):
            client(cluster, 3, username="alice", password="wrong").ping()

        # A change made on node 1 reaches connections already open on node 3.
        admin.execute_command("ACL", "SETUSER", "alice", "-get")
        wait_until(lambda: _denied(lambda: alice3.get("app:1")), what="GET denied on node 3")
        assert alice3.set("app:2", "w") is True

        # Deleting the user closes its connections on every node.
        admin.execute_command("ACL", "SETUSER", "bob", "on", ">bobpw", "+@all", "~*")
        bob = as_user(cluster, 2, "bob", "bobpw")
        assert admin.execute_command("ACL", "DELUSER", "alice") == 1
        for conn in (alice2, alice3):
            wait_until(lambda c=conn: _closed(c), what="alice's connection closed")  # type: ignore[misc]
        assert bob.ping() is True

        # Only the hash is ever written down, not the password.
        for k in range(30):  # enough entries for snapshots on every node
            admin.set(f"k{k}", "x")
        bob_hash = hashlib.sha256(b"bobpw").hexdigest().encode()
        stored = files_under(cluster.data_dir)
        assert bob_hash in stored  # what is written can be read here: the test can see
        assert SECRET.encode() not in stored
        assert b"bobpw" not in stored.replace(bob_hash, b"")

        cluster.stop()
        cluster.start()
        cluster.wait_ready()
        for node in cluster.ids:
            again = as_user(cluster, node, "bob", "bobpw")
            assert again.get("k29") == b"x"
            again.close()
            with pytest.raises(redis.AuthenticationError):
                client(cluster, node, username="alice", password=SECRET).ping()
    finally:
        cluster.close()


def _denied(call: object) -> bool:
    assert callable(call)
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def _closed(conn: redis.Redis) -> bool:
    try:
        conn.ping()
    except redis.ConnectionError:
        return True
    return False


def test_the_password_flag_is_the_default_users_password(tmp_path: Path) -> None:
    cluster = LocalCluster(
        1, find_base_port(1), tmp_path / "c", extra_args=[*FAST, "--password", "s3cret"]
    )
    cluster.start()
    try:
        cluster.wait_ready()
        authed = client(cluster, 1, password="s3cret")
        line = authed.execute_command("ACL", "LIST")[0]
        digest = hashlib.sha256(b"s3cret").hexdigest()
        assert line == f"user default on #{digest} ~* &* +@all".encode()
        assert client(cluster, 1, username="default", password="s3cret").ping() is True
        with pytest.raises(redis.AuthenticationError):
            client(cluster, 1).get("x")
        # CONFIG SET requirepass changes this node's default user, as in Redis.
        assert authed.config_set("requirepass", "n3w") is True
        assert authed.get("x") is None  # an authenticated connection stays so
        with pytest.raises(redis.AuthenticationError):
            client(cluster, 1, password="s3cret").ping()
        assert client(cluster, 1, password="n3w").ping() is True
    finally:
        cluster.close()


def test_users_of_the_acl_file_and_their_replicated_changes(tmp_path: Path) -> None:
    acl = tmp_path / "users.acl"
    acl.write_text("user app on >app-pw ~app:* +@all -@dangerous\nuser old on >old-pw +@all\n")
    cluster = LocalCluster(
        2, find_base_port(2), tmp_path / "c", extra_args=[*FAST, "--aclfile", str(acl)]
    )
    cluster.start()
    try:
        cluster.wait_ready()
        app = as_user(cluster, 2, "app", "app-pw")
        assert app.set("app:1", "v") is True
        assert "'flushall' command" in noperm(app.flushall)
        admin = client(cluster, 1)
        assert admin.execute_command("ACL", "DELUSER", "old") == 1
        assert admin.execute_command("ACL", "USERS") == [b"app", b"default"]
        with pytest.raises(redis.ResponseError, match="reads the ACL file at start only"):
            admin.execute_command("ACL", "LOAD")
        cluster.stop()
        cluster.start()
        cluster.wait_ready()
        # The deletion is replicated state: the file's user stays deleted after a restart.
        for node in cluster.ids:
            with pytest.raises(redis.AuthenticationError):
                client(cluster, node, username="old", password="old-pw").ping()
            assert as_user(cluster, node, "app", "app-pw").get("app:1") == b"v"
    finally:
        cluster.close()
