"""Runtime nodes over real TCP in one process: commits, failover, restart, snapshots, disk
failure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from inproc import InprocCluster, ListMachine

from pyxos.runtime.errors import NodeFailed, Unavailable, UnknownOutcome
from pyxos.storage import StorageError
from pyxos.transport import TransportConfig


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = InprocCluster(tmp_path)
    await c.start()
    yield c
    await c.close()


async def test_commands_through_any_node_apply_everywhere_in_one_order(
    cluster: InprocCluster,
) -> None:
    await cluster.leader()
    replies = await asyncio.gather(
        *(cluster.nodes[1 + i % 3].submit(b"c%d" % i) for i in range(300))
    )
    assert sorted(int(r) for r in replies) == list(range(1, 301))
    length = await cluster.nodes[2].read(lambda sm: len(sm.items))
    assert length == 300
    for i in (1, 2, 3):
        await cluster.nodes[i].wait_for(lambda i=i: len(cluster.machine(i).items) == 300)
    assert cluster.machine(1).items == cluster.machine(2).items == cluster.machine(3).items


async def test_group_commit_uses_far_fewer_syncs_than_commands(cluster: InprocCluster) -> None:
    leader = await cluster.leader()
    before = leader.storage.syncs
    await asyncio.gather(*(leader.submit(b"x%d" % i) for i in range(500)))
    assert leader.storage.syncs - before < 250


async def test_leader_failover_keeps_every_acknowledged_command(cluster: InprocCluster) -> None:
    leader = await cluster.leader()
    acked = [await leader.submit(b"before-%d" % i) for i in range(20)]
    assert len(acked) == 20
    await cluster.stop(leader.id)
    new = await cluster.leader()
    assert new.id != leader.id
    await new.submit(b"after")
    items = await new.read(lambda sm: list(sm.items))
    assert items[:20] == [b"before-%d" % i for i in range(20)]
    assert items[-1] == b"after"
    # The old leader restarts from its disk and catches up.
    await cluster.start(leader.id)
    back = cluster.nodes[leader.id]
    await back.wait_for(lambda: len(cluster.machine(leader.id).items) == 21)
    assert cluster.machine(leader.id).items == items


async def test_restart_of_every_node_recovers_the_log_from_disk(cluster: InprocCluster) -> None:
    leader = await cluster.leader()
    for i in range(50):
        await leader.submit(b"v%d" % i)
    expected = list(cluster.machine(leader.id).items)
    for i in (1, 2, 3):
        await cluster.stop(i)
    await cluster.start()
    node = await cluster.leader()
    items = await node.read(lambda sm: list(sm.items))
    assert items == expected


async def test_lagging_node_receives_a_snapshot_in_chunks(tmp_path: Path) -> None:
    # Queued messages are dropped on reconnect (stale_after=1 ms), so the lagger cannot catch
    # up from proposals the leader queued while it was down: it needs the snapshot.
    c = InprocCluster(
        tmp_path,
        snapshot_every=20,
        snapshot_chunk=1000,
        transport=TransportConfig(stale_after=0.001),
    )
    await c.start()
    try:
        leader = await c.leader()
        lagger = next(i for i in c.nodes if i != leader.id)
        await c.stop(lagger)
        payload = b"p" * 200
        for i in range(120):
            await leader.submit(payload + b"%d" % i)
        assert leader.replica.snapshot_slot > 0
        await c.start(lagger)
        node = c.nodes[lagger]
        await node.wait_for(lambda: len(c.machine(lagger).items) == 120, timeout=20)
        assert node.replica.snapshot_slot > 0
        assert c.machine(lagger).items == c.machine(leader.id).items
        # The snapshot was several chunks of at most 1000 bytes, so it was streamed.
        assert node.storage.snapshot is not None and node.storage.snapshot.size > 3000
    finally:
        await c.close()


class GatedMachine(ListMachine):
    """Snapshots through ConcurrentSnapshots; encoding waits for ``gate`` and every step
    records the thread it ran on."""

    gate = threading.Event()
    threads: ClassVar[dict[str, set[int]]] = {"stream": set(), "prepare": set(), "swap": set()}

    def snapshot_stream(self) -> Iterator[bytes]:
        items = list(self.items)

        def frames() -> Iterator[bytes]:
            GatedMachine.threads["stream"].add(threading.get_ident())
            GatedMachine.gate.wait(30)
            yield msgspec.msgpack.encode(items)

        return frames()

    def prepare_restore(self, data: bytes) -> Callable[[], None]:
        GatedMachine.threads["prepare"].add(threading.get_ident())
        items = msgspec.msgpack.decode(data, type=list[bytes])

        def swap() -> None:
            GatedMachine.threads["swap"].add(threading.get_ident())
            self.items = items

        return swap


async def test_snapshots_are_built_and_installed_off_the_event_loop(tmp_path: Path) -> None:
    GatedMachine.gate.clear()
    for seen in GatedMachine.threads.values():
        seen.clear()
    c = InprocCluster(
        tmp_path,
        machine=GatedMachine,
        snapshot_every=20,
        transport=TransportConfig(stale_after=0.001),
    )
    await c.start()
    loop_thread = threading.get_ident()
    try:
        leader = await c.leader()
        lagger = next(i for i in c.nodes if i != leader.id)
        await c.stop(lagger)
        for i in range(25):
            await leader.submit(b"a%d" % i)
        await leader.wait_for(lambda: bool(GatedMachine.threads["stream"]))
        # Every node's snapshot is stuck in its encoder; commits carry on regardless.
        for i in range(40):
            await leader.submit(b"b%d" % i)
        assert leader.replica.snapshot_slot == 0
        assert loop_thread not in GatedMachine.threads["stream"]
        GatedMachine.gate.set()
        await leader.wait_for(lambda: leader.replica.snapshot_slot > 0)
        await c.start(lagger)
        node = c.nodes[lagger]
        await node.wait_for(lambda: len(c.machine(lagger).items) == 65, timeout=20)
        assert node.replica.snapshot_slot > 0
        assert c.machine(lagger).items == c.machine(leader.id).items
        # Decoded on the snapshot thread, swapped in on the loop.
        prepared_on = GatedMachine.threads["prepare"]
        assert prepared_on and loop_thread not in prepared_on
        assert GatedMachine.threads["swap"] == {loop_thread}
    finally:
        GatedMachine.gate.set()
        await c.close()


async def test_a_cluster_on_sqlite_commits_and_recovers_after_a_full_restart(
    tmp_path: Path,
) -> None:
    c = InprocCluster(tmp_path, storage="sqlite")
    await c.start()
    try:
        leader = await c.leader()
        for i in range(30):
            await leader.submit(b"s%d" % i)
        assert all((tmp_path / f"n{i}" / "sqlite" / "pyxos.db").exists() for i in c.nodes)
        for i in list(c.nodes):
            await c.stop(i)
        await c.start()
        leader = await c.leader()
        await leader.submit(b"after")
        expected = [b"s%d" % i for i in range(30)] + [b"after"]
        for i, node in c.nodes.items():
            await node.wait_for(lambda i=i: len(c.machine(i).items) == 31)  # type: ignore[misc]
            assert c.machine(i).items == expected
    finally:
        await c.close()


@pytest.mark.parametrize("inline_writes", [False, True])
async def test_a_node_whose_disk_fails_stops_and_the_others_carry_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline_writes: bool
) -> None:
    cluster = InprocCluster(tmp_path, inline_writes=inline_writes)
    await cluster.start()
    try:
        await _disk_fails(cluster, monkeypatch)
    finally:
        await cluster.close()


async def _disk_fails(cluster: InprocCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A follower's writes fail (on its I/O thread, or inline on its loop): it stops."""
    leader = await cluster.leader()
    victim = cluster.nodes[next(i for i in cluster.nodes if i != leader.id)]

    def broken(*args: object) -> None:
        raise StorageError("injected: fsync failed (EIO)")

    monkeypatch.setattr(victim.storage, "write", broken)
    for i in range(5):
        await leader.submit(b"w%d" % i)
    await victim.wait_for(lambda: victim.failed is not None)
    assert "fsync failed" in (victim.failed or "")
    assert cluster.fatal[victim.id] == victim.failed
    with pytest.raises(NodeFailed):
        await victim.submit(b"never")
    # Two of three still form a quorum.
    assert await leader.submit(b"still-committing")


async def test_minority_side_cannot_commit(cluster: InprocCluster) -> None:
    leader = await cluster.leader()
    others = [i for i in cluster.nodes if i != leader.id]
    for i in others:
        await cluster.stop(i)
    with pytest.raises((Unavailable, UnknownOutcome)):
        await leader.submit(b"lonely", timeout=1.0)
