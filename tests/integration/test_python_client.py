"""pyxos.Client and pyxos.AsyncClient against a real cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from procs import FAST, client, leader

from pyxos.client import AsyncClient, Client, ResponseError, UnavailableError, UnknownOutcomeError
from pyxos.launch.local_cluster import LocalCluster, find_base_port


def endpoints(cluster: LocalCluster) -> str:
    return ",".join(f"127.0.0.1:{cluster.client_port(k)}" for k in cluster.ids)


def test_client_finds_the_leader_and_runs_commands(local_cluster: LocalCluster) -> None:
    lid = leader(local_cluster)
    follower_first = [k for k in local_cluster.ids if k != lid] + [lid]
    with Client([f"127.0.0.1:{local_cluster.client_port(k)}" for k in follower_first]) as c:
        assert c.set("a", 1) == b"OK"
        assert c.endpoints[c._current][1] == local_cluster.client_port(lid)
        assert c.get("a") == b"1"
        assert c.incr("a", 5) == 6
        assert c.cas("a", 6, 7) == 1 and c.cas("a", 6, 8) == 0
        assert c.mget("a", "zz") == [b"7", None]
        with pytest.raises(ResponseError, match="unknown command"):
            c.execute("NOPE")


def test_a_retried_write_is_applied_once(local_cluster: LocalCluster) -> None:
    leader(local_cluster)
    r = client(local_cluster, 1)
    assert r.execute_command("RID", 42, 1, "INCR", "n") == 1
    assert r.execute_command("RID", 42, 1, "INCR", "n") == 1  # the retry: cached reply
    assert client(local_cluster, 2).execute_command("RID", 42, 1, "INCR", "n") == 1
    assert r.execute_command("RID", 42, 2, "INCR", "n") == 2
    assert r.get("n") == b"2"


def test_exactly_once_through_a_leader_kill(local_cluster: LocalCluster) -> None:
    lid = leader(local_cluster)
    acked, unknown = 0, 0
    with Client(endpoints(local_cluster), timeout=3.0) as c:
        for i in range(200):
            if i == 60:
                local_cluster.kill(lid)
            try:
                c.incr("counter")
                acked += 1
            except UnknownOutcomeError:
                unknown += 1
        value = int(c.get("counter"))
    assert acked + unknown == 200
    assert acked <= value <= acked + unknown
    assert acked > 150


def test_async_client_concurrent_writes(local_cluster: LocalCluster) -> None:
    leader(local_cluster)

    async def main() -> tuple[list[int], bytes]:
        async with AsyncClient(endpoints(local_cluster)) as c:
            results = await asyncio.gather(*(c.incr("k") for _ in range(100)))
            return sorted(results), await c.get("k")

    results, final = asyncio.run(main())
    assert results == list(range(1, 101))
    assert final == b"100"


def test_outcome_errors_distinguish_unknown_from_unavailable(tmp_path: Path) -> None:
    cluster = LocalCluster(
        3, find_base_port(3), tmp_path / "c", extra_args=[*FAST, "--request-timeout", "0.5"]
    )
    cluster.start()
    try:
        cluster.wait_ready()
        lid = leader(cluster)
        for k in cluster.ids:
            if k != lid:
                cluster.kill(k)
        only = [f"127.0.0.1:{cluster.client_port(lid)}"]
        with Client(only, attempts=2, timeout=3.0) as c, pytest.raises(UnknownOutcomeError):
            c.set("x", "1")  # proposed, but no quorum can choose it
        cluster.kill(lid)
        with Client(only, attempts=2) as c, pytest.raises(UnavailableError):
            c.set("x", "1")  # nobody listening: definitely not applied
    finally:
        cluster.close()
