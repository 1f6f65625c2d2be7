"""``pyxos demo``: a live 3-node cluster, a leader killed mid-workload, and a verdict.

Starts three ``pyxos serve`` processes, writes unique keys through every node with a
progress bar, kills the leader with SIGKILL halfway, reports the new leader and how long
writes stalled, restarts the old leader, then checks that every acknowledged write is
readable and that all replicas reached the same state digest.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pyxos.client import AsyncClient, ClientError, UnknownOutcomeError
from pyxos.launch.local_cluster import LocalCluster, find_base_port

T = TypeVar("T")


@dataclass(slots=True)
class DemoResult:
    acked: dict[str, str] = field(default_factory=dict)
    unknown: int = 0
    first_leader: int = 0
    new_leader: int = 0
    recovery_s: float = 0.0
    write_seconds: float = 0.0
    lost: int = 0
    digests: dict[int, str] = field(default_factory=dict)
    applied: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and len(set(self.digests.values())) == 1 and bool(self.acked)


def _paxos(cluster: LocalCluster, node: int, section: str = "paxos") -> dict[str, object]:
    info: dict[str, object] = redis.Redis(port=cluster.client_port(node), socket_timeout=2).info(
        section
    )
    return info


async def _wait(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll the other processes' observable state until ``predicate`` gives a value."""
    deadline = time.monotonic() + timeout
    while True:
        value: T | None
        try:
            value = predicate()
        except (redis.RedisError, OSError, KeyError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _agreed_leader(cluster: LocalCluster, among: list[int]) -> int | None:
    seen = {str(_paxos(cluster, k).get("leader_id", "")) for k in among}
    if len(seen) == 1:
        (lid,) = seen
        if lid and int(lid) in among:
            return int(lid)
    return None


async def _run(cluster: LocalCluster, writes: int, console: Console) -> DemoResult:
    result = DemoResult()
    ids = cluster.ids
    result.first_leader = await _wait(lambda: _agreed_leader(cluster, ids), 20, "a leader")
    console.print(f"[bold]cluster up[/bold]: 3 nodes, leader is node {result.first_leader}")
    endpoints = [("127.0.0.1", cluster.client_port(k)) for k in ids]
    clients = [AsyncClient(endpoints[i:] + endpoints[:i], timeout=3.0) for i in range(3)]
    next_key = 0
    kill_at = writes // 2
    killed_at: float | None = None
    ack_times: list[float] = []
    lock = asyncio.Lock()

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("writing", total=writes)

        async def worker(w: int) -> None:
            nonlocal next_key, killed_at
            c = clients[w % 3]
            while True:
                async with lock:
                    if next_key >= writes:
                        return
                    i = next_key
                    next_key += 1
                    if i == kill_at and killed_at is None:
                        cluster.kill(result.first_leader)
                        killed_at = time.monotonic()
                        progress.console.print(
                            f"[red]SIGKILL[/red] leader node {result.first_leader} after {i} writes"
                        )
                key, value = f"demo:{i}", f"value-{i}"
                try:
                    await c.set(key, value)
                except UnknownOutcomeError:
                    result.unknown += 1
                except ClientError:
                    result.unknown += 1
                else:
                    result.acked[key] = value
                    ack_times.append(time.monotonic())
                progress.advance(task)

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(24)))
        result.write_seconds = time.monotonic() - started
    for c in clients:
        await c.close()
    survivors = [k for k in ids if k != result.first_leader]
    result.new_leader = await _wait(lambda: _agreed_leader(cluster, survivors), 20, "a new leader")
    if killed_at is not None:
        # The longest stretch without any acknowledgement, from the kill on: how long
        # clients could not write (replies already in flight do not count as recovery).
        after = [killed_at, *sorted(t for t in ack_times if t > killed_at)]
        result.recovery_s = max((b - a for a, b in itertools.pairwise(after)), default=0.0)
    console.print(
        f"new leader: node {result.new_leader}; writes stalled for at most "
        f"{result.recovery_s * 1000:.0f} ms after the kill"
    )
    console.print(f"restarting node {result.first_leader} from its disk ...")
    cluster.start(result.first_leader)
    cluster.wait_ready(result.first_leader)

    def converged() -> bool | None:
        rows = {k: _paxos(cluster, k, "digest") for k in ids}
        result.digests = {k: str(r["state_digest"]) for k, r in rows.items()}
        result.applied = {k: int(str(r["applied_index"])) for k, r in rows.items()}
        same = len(set(result.applied.values())) == 1 and len(set(result.digests.values())) == 1
        return True if same else None

    await _wait(converged, 30, "replicas to converge")
    reader = redis.Redis(port=cluster.client_port(result.first_leader), socket_timeout=10)
    keys = list(result.acked)
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        for key, got in zip(batch, reader.mget(batch), strict=True):
            text = got.decode() if isinstance(got, bytes) else got
            if text != result.acked[key]:
                result.lost += 1
    return result


def run_demo(writes: int = 4000, port: int | None = None, data_dir: Path | None = None) -> bool:
    """Run the demonstration; True when every check held."""
    console = Console()
    root = data_dir or Path(tempfile.mkdtemp(prefix="pyxos-demo-"))
    base = port or find_base_port(3)
    cluster = LocalCluster(3, base, root, extra_args=["--log-level", "warning"])
    started = time.monotonic()
    console.print(f"starting 3 nodes on ports {base}-{base + 2} (data in {root})")
    cluster.start()
    try:
        cluster.wait_ready()
        result = asyncio.run(_run(cluster, writes, console))
    finally:
        cluster.close()
    table = Table(title="pyxos demo")
    table.add_column("check")
    table.add_column("result")
    table.add_row("writes acknowledged", f"{len(result.acked)} of {writes}")
    table.add_row("writes with unknown outcome", str(result.unknown))
    table.add_row("throughput", f"{len(result.acked) / result.write_seconds:.0f} writes/s")
    table.add_row("leader killed (SIGKILL)", f"node {result.first_leader}")
    table.add_row("new leader", f"node {result.new_leader}")
    table.add_row("longest write stall after the kill", f"{result.recovery_s * 1000:.0f} ms")
    table.add_row("acknowledged writes lost", str(result.lost))
    for k, digest in sorted(result.digests.items()):
        table.add_row(f"node {k} state", f"applied {result.applied[k]}, digest {digest[:16]}")
    table.add_row("total time", f"{time.monotonic() - started:.1f} s")
    console.print(table)
    verdict = "[green]PASS[/green]: every acknowledged write survived and all replicas agree"
    console.print(verdict if result.ok else "[red]FAIL[/red]")
    return result.ok
