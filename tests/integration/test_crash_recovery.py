"""Real processes killed with SIGKILL: nothing acknowledged may be lost."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest
import redis
from procs import FAST, client, converged, info, leader, wait_until

from pyxos.chaos import kill_loop
from pyxos.core.ballot import Ballot
from pyxos.launch.local_cluster import LocalCluster, find_base_port


def _ballot(text: str) -> Ballot:
    r, n = text.split(":")
    return Ballot(int(r), int(n))


def test_kill9_every_node_mid_stream_then_restart(local_cluster: LocalCluster) -> None:
    lid = leader(local_cluster)
    writer_node = next(k for k in local_cluster.ids if k != lid)
    acked: list[str] = []
    enough = threading.Event()
    done = threading.Event()

    def write() -> None:
        conn = client(local_cluster, writer_node)
        i = 0
        try:
            while True:
                token = f"t{i};"
                conn.append("log", token)
                acked.append(token)
                i += 1
                if i == 150:
                    enough.set()
        except (redis.RedisError, OSError):
            pass
        finally:
            enough.set()
            done.set()

    threading.Thread(target=write, daemon=True).start()
    assert enough.wait(60)
    ballots = {k: _ballot(info(local_cluster, k)["ballot"]) for k in local_cluster.ids}
    for k in local_cluster.ids:  # in the middle of the stream
        local_cluster.kill(k)
    assert done.wait(30)
    assert len(acked) >= 150
    local_cluster.start()
    local_cluster.wait_ready()
    leader(local_cluster)
    final = client(local_cluster, 1).get("log")
    assert final is not None
    tokens = final.decode().split(";")[:-1]
    # Every acknowledged append is there, once, in the order it was acknowledged;
    # at most the one in flight at the kill may follow.
    assert tokens[: len(acked)] == [t[:-1] for t in acked]
    assert len(tokens) - len(acked) in (0, 1)
    digests = converged(local_cluster, local_cluster.ids)
    assert len(digests) == 1
    for k in local_cluster.ids:  # no node went back on a promise
        assert _ballot(info(local_cluster, k)["ballot"]) >= ballots[k]


def test_kill9_one_node_repeatedly_during_load(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    report = kill_loop.run(local_cluster, kills=4, interval=1.0, down_for=0.3, writers=3, seed=7)
    print("kill experiment:", report.as_dict())
    assert report.kills == 4
    assert report.acked > 100
    assert report.lost == 0
    converged(local_cluster, local_cluster.ids)


def test_garbage_on_the_peer_port_is_refused_and_the_cluster_keeps_committing(
    local_cluster: LocalCluster,
) -> None:
    leader(local_cluster)
    port = local_cluster.listen_port(1)
    payloads = [
        os.urandom(64),
        struct.pack(">I", 1 << 31) + b"x" * 16,  # length prefix over the limit
        struct.pack(">I", 100) + b"short",  # truncated frame, then EOF
        b"\x00" * 3,
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(4096):  # the node closes the connection
                pass
    r = client(local_cluster, 1)
    for i in range(20):
        assert r.set(f"after-{i}", "ok") is True
    assert client(local_cluster, 2).get("after-19") == b"ok"
    log = local_cluster.log_text(1)
    assert "closed" in log or "rejected" in log
    assert local_cluster.running(1)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_node_whose_disk_fills_up_stops_and_the_others_carry_on(tmp_path: Path) -> None:
    cluster = LocalCluster(3, find_base_port(3), tmp_path / "c", extra_args=list(FAST))
    small = cluster.data_dir / "node3"
    if not _mount_tmpfs(small, "4m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        cluster.start()
        cluster.wait_ready()
        leader(cluster)
        r = client(cluster, 1)
        value = b"x" * 200_000
        for i in range(60):  # 12 MB: more than node 3's 4 MB disk
            with contextlib.suppress(redis.RedisError):  # the leader may change meanwhile
                r.set(f"big-{i}", value)
        proc = cluster.procs[3]
        assert wait_until(lambda: proc.poll() is not None, what="node 3 to stop")
        assert proc.returncode == 3
        assert "storage failed" in cluster.log_text(3)
        assert wait_until(lambda: client(cluster, 2).set("still", "alive"), what="a write")
        assert client(cluster, 1).get("still") == b"alive"
    finally:
        cluster.close()
        subprocess.run(["umount", "-l", str(small)], check=False, capture_output=True)
