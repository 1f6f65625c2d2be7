"""Redis as applications use it, against a real 3-node cluster: expiry, transactions that
span nodes, scripts, and redis-py's Lock, including across the loss of the leader."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis
from procs import client, converged, info, leader, wait_until
from redis.exceptions import LockError, LockNotOwnedError

from pyxos.launch.local_cluster import LocalCluster


def test_keys_expire_on_an_idle_cluster_and_never_come_back(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    nodes = [client(local_cluster, k) for k in local_cluster.ids]
    nodes[0].set("short", "v", px=300)
    nodes[1].set("long", "v", ex=1000)
    assert nodes[2].get("short") == b"v"  # a write is visible on every node at once
    # Without any read of the key, the leader's clock ticks delete it: INFO keyspace is
    # answered from local state and shows the replicated state itself.
    wait_until(
        lambda: all(
            info(local_cluster, k, "keyspace").get("db0", {}).get("keys") == 1
            for k in local_cluster.ids
        ),
        what="the key to expire on every replica",
    )
    for conn in nodes:
        assert conn.get("short") is None
        assert conn.ttl("short") == -2
        assert 990 <= conn.ttl("long") <= 1000
    # At the edge: once one node says gone, every node does.
    nodes[0].set("edge", "v", px=150)
    seen_gone = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for conn in nodes:
            present = conn.exists("edge") == 1
            assert not (seen_gone and present), "a key came back after a node reported it gone"
            seen_gone = seen_gone or not present
        if seen_gone:
            break
    assert seen_gone
    assert all(conn.exists("edge") == 0 for conn in nodes)
    assert len(converged(local_cluster, local_cluster.ids)) == 1


def test_databases_transactions_and_watch_across_nodes(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r1 = client(local_cluster, 1, db=3)
    r2 = client(local_cluster, 2, db=3)
    r3 = client(local_cluster, 3)
    r1.set("k", "in3")
    assert r2.get("k") == b"in3" and r3.get("k") is None
    pipe = r1.pipeline()
    pipe.incr("n").incr("n").get("n").expire("n", 100).ttl("n")
    assert pipe.execute() == [1, 2, b"2", True, 100]
    with r1.pipeline() as watched:
        watched.watch("k")
        watched.multi()
        watched.set("k", "mine")
        r2.set("k", "theirs")  # another node's client changes the key in between
        with pytest.raises(redis.WatchError):
            watched.execute()
    assert r1.get("k") == b"theirs"
    with r1.pipeline() as watched:
        watched.watch("k")
        watched.multi()
        watched.set("k", "mine")
        assert watched.execute() == [True]
    assert r2.get("k") == b"mine"
    assert r3.move("absent", 3) is False
    assert len(converged(local_cluster, local_cluster.ids)) == 1


def test_scripts_through_any_node(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r1, r2 = client(local_cluster, 1), client(local_cluster, 2)
    incr_by = r1.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    assert incr_by(keys=["c"], args=[5]) == 5
    assert incr_by(keys=["c"], args=[5], client=r2) == 10  # EVALSHA finds it on node 2
    assert r2.script_exists(incr_by.sha) == [True]
    assert r1.eval("return {KEYS[1], ARGV[1], redis.call('get', KEYS[1])}", 1, "c", "x") == [
        b"c", b"x", b"10",
    ]  # fmt: skip
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed"):
        r2.eval_ro("return redis.call('set', 'x', 1)", 0)
    assert r1.script_flush() is True
    assert r2.script_exists(incr_by.sha) == [False]
    assert len(converged(local_cluster, local_cluster.ids)) == 1


def test_redis_py_lock(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r1, r2 = client(local_cluster, 1), client(local_cluster, 3)
    first = r1.lock("resource", timeout=5)
    assert first.acquire(blocking=False)
    assert first.locked() and first.owned()
    second = r2.lock("resource", timeout=5, blocking_timeout=0.3)
    assert not second.acquire()  # held by the first, through another node
    assert first.extend(10)
    assert 10_000 < r2.pttl("resource") <= 15_000
    assert first.reacquire()  # back to the lock's own timeout
    assert 4_000 < r2.pttl("resource") <= 5_000
    first.release()
    with pytest.raises(LockError):
        first.release()  # redis-py knows it no longer holds it
    assert second.acquire()
    short = r1.lock("brief", timeout=0.3)
    assert short.acquire()
    wait_until(lambda: not r2.exists("brief"), what="the lock's TTL to end it")
    with pytest.raises(LockNotOwnedError):
        short.extend(1)  # the server says it expired
    with pytest.raises(LockNotOwnedError):
        short.release()
    second.release()


def test_lock_is_never_held_twice_across_a_leader_kill(local_cluster: LocalCluster) -> None:
    lid = leader(local_cluster)
    holds: list[tuple[int, float, float]] = []
    errors: list[str] = []
    stop = threading.Event()
    lock_timeout = 3.0

    def quick_client(node: int) -> redis.Redis:
        port = local_cluster.client_port(node)
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def worker(me: int, first_node: int) -> None:
        node = first_node
        conn = quick_client(node)
        while not stop.is_set():
            lock = conn.lock("mutex", timeout=lock_timeout, blocking_timeout=1.0, sleep=0.01)
            try:
                if not lock.acquire():
                    continue
                start = time.monotonic()
                time.sleep(0.02)  # the critical section, far shorter than the lock's TTL
                end = time.monotonic()
                holds.append((me, start, end))
                lock.release()
            except (redis.RedisError, OSError) as exc:
                # The outcome of that step is unknown: the lock may stay held (by a token
                # nobody has) until its TTL. Go on through another node.
                errors.append(f"{me}: {exc!r}")
                node = node % 3 + 1
                while not local_cluster.running(node):
                    node = node % 3 + 1
                conn = quick_client(node)

    threads = [
        threading.Thread(target=worker, args=(i, k), daemon=True)
        for i, k in enumerate(local_cluster.ids)
    ]
    for t in threads:
        t.start()
    wait_until(lambda: len(holds) >= 15, what="the lock to change hands")
    before_kill = len(holds)
    local_cluster.kill(lid)
    survivors = [k for k in local_cluster.ids if k != lid]
    leader(local_cluster, survivors)
    wait_until(lambda: len(holds) >= before_kill + 15, timeout=30, what="locking after the kill")
    local_cluster.start(lid)
    local_cluster.wait_ready(lid)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    ordered = sorted(holds, key=lambda h: h[1])
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(ordered):
        assert a_end <= b_start, f"worker {a} and worker {b} held the lock at once"
    assert len({h[0] for h in holds}) >= 2, "the lock never changed hands"
    print(f"{len(holds)} holds, {len(errors)} interrupted attempts: {errors[:5]}")


def test_exactly_once_transactions_and_client_pause(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r = client(local_cluster, 2)
    conn = r.connection_pool.get_connection()
    try:
        for _ in range(2):  # the second EXEC is a retry of the first (same client id, seq)
            conn.send_command("MULTI")
            assert conn.read_response() == b"OK"
            conn.send_command("INCR", "once")
            assert conn.read_response() == b"QUEUED"
            conn.send_command("RID", "11", "1", "EXEC")
            assert conn.read_response() == [1]
    finally:
        r.connection_pool.release(conn)
    assert r.get("once") == b"1"
    # CLIENT PAUSE WRITE holds this node's writes (not its reads) until UNPAUSE.
    writer = client(local_cluster, 2)
    assert r.client_pause(60_000, all=False)
    done = threading.Event()
    threading.Thread(target=lambda: (writer.set("paused", "yes"), done.set()), daemon=True).start()
    assert not done.wait(0.3)
    assert r.get("paused") is None  # the read is served; the write still waits
    assert r.client_unpause()
    assert done.wait(10)
    assert r.get("paused") == b"yes"
