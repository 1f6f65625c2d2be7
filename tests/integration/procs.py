"""Helpers for tests that run real ``pyxos serve`` processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from pyxos.launch.local_cluster import LocalCluster

T = TypeVar("T")

FAST = ["--tick-ms", "10", "--election-ms", "150", "--heartbeat-ms", "30", "--log-level", "info"]


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll another process's observable state until ``predicate`` returns a true value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (redis.RedisError, OSError):
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def client(cluster: LocalCluster, node: int, **kw: Any) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=cluster.client_port(node), socket_timeout=10, **kw)


def info(cluster: LocalCluster, node: int, section: str = "paxos") -> dict[str, Any]:
    return client(cluster, node).info(section)  # type: ignore[no-any-return]


def leader(cluster: LocalCluster, among: list[int] | None = None) -> int:
    """The node that every running node (or those in ``among``) names as leader."""
    ids = among or [k for k in cluster.ids if cluster.running(k)]

    def agreed() -> int | None:
        seen = {info(cluster, k).get("leader_id") for k in ids}
        if len(seen) == 1:
            (lid,) = seen
            if lid not in ("", None) and int(lid) in ids:
                return int(lid)
        return None

    return wait_until(agreed, what="an agreed leader")


def converged(cluster: LocalCluster, nodes: list[int]) -> set[str]:
    """Wait until the nodes applied the same index; return their state digests."""

    def same() -> set[str] | None:
        rows = [info(cluster, k, "digest") for k in nodes]
        if (
            len({r["applied_index"] for r in rows}) == 1
            and len({r["state_digest"] for r in rows}) == 1
        ):
            return {r["state_digest"] for r in rows}
        return None

    return wait_until(same, what="converged replicas")
