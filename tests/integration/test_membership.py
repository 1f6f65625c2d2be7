"""Membership changes on live in-process nodes, under a steady stream of writes.

Every test keeps a writer running while the cluster changes, and at the end checks that
every acknowledged write is applied on every node still in the cluster, in one order.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest
from inproc import InprocCluster, ListMachine

from pyxos.core.ready import Standing
from pyxos.launch.local_cluster import free_ports
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.errors import MembershipError, PyxosError
from pyxos.runtime.join import JoinFailed, join_cluster
from pyxos.runtime.node import Node

pytestmark = pytest.mark.asyncio


class Writer:
    """Writes ``w0, w1, ...`` through whichever node answers; remembers what was acked."""

    def __init__(self, cluster: InprocCluster) -> None:
        self.cluster = cluster
        self.acked: list[bytes] = []
        self.failed = 0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop:
            nodes = [x for x in self.cluster.nodes.values() if not x.failed]
            if not nodes:
                await asyncio.sleep(0.01)
                continue
            node = next((x for x in nodes if x.leader_id == x.id), None) or nodes[0]
            value = b"w%d" % n
            try:
                await node.submit(value, timeout=3.0)
                self.acked.append(value)
                n += 1
            except PyxosError:
                self.failed += 1  # unknown or unavailable: the next write is a new value
                n += 1
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop = True
        assert self._task is not None
        await self._task

    async def wait_for(self, more: int, timeout: float = 20.0) -> None:
        """Until ``more`` further writes are acknowledged (writes flow)."""
        target = len(self.acked) + more
        node = next(iter(self.cluster.nodes.values()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.acked) < target:
            assert loop.time() < deadline, f"writes stalled at {len(self.acked)}"
            await node.wait_for_change(0.05)


async def add_node(cluster: InprocCluster, i: int, *, auto_promote: bool = True) -> Node:
    """``pyxos member add`` then ``pyxos serve --join``, in process."""
    port = free_ports(1)[0]
    asker = next(iter(cluster.nodes.values()))
    await asker.membership.change("add", i, f"127.0.0.1:{port}", auto_promote=auto_promote)
    config = NodeConfig(i, {i: ("127.0.0.1", port)}, cluster.root / f"n{i}", **cluster.options)  # type: ignore[arg-type]
    join = [cluster.members[k] for k in cluster.nodes]
    config = await join_cluster(config, join, timeout=20.0)
    node = Node(config, ListMachine(), on_fatal=lambda r: cluster.fatal.__setitem__(i, r))
    await node.start()
    cluster.nodes[i] = node
    cluster.members[i] = ("127.0.0.1", port)
    return node


async def wait_role(cluster: InprocCluster, i: int, role: str, timeout: float = 30.0) -> None:
    leader = await cluster.leader()

    def has_role() -> bool:
        return any(r["id"] == i and r["role"] == role for r in leader.membership.rows())

    await leader.wait_for(has_role, timeout)


async def converged(cluster: InprocCluster, writer: Writer) -> None:
    """Every node applied the same log, and it holds every acknowledged write."""
    leader = await cluster.leader()
    target = leader.replica.commit_index
    for node in cluster.nodes.values():
        await node.wait_for(lambda node=node: node.applied >= target, 20.0)
    logs = {i: cluster.machine(i).items for i in cluster.nodes}
    shortest = min(len(items) for items in logs.values())
    first = next(iter(logs.values()))[:shortest]
    for i, items in logs.items():
        assert items[:shortest] == first, f"node {i} applied another order"
    for i, items in logs.items():
        missing = set(writer.acked) - set(items)
        assert not missing, f"node {i} lacks acknowledged writes {sorted(missing)[:5]}"


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = InprocCluster(tmp_path, 3)
    await c.start()
    await c.leader()
    yield c
    await c.close()


async def test_grow_to_five_then_shrink_to_three_removing_the_leader(
    cluster: InprocCluster,
) -> None:
    writer = Writer(cluster)
    writer.start()
    await writer.wait_for(20)
    await add_node(cluster, 4)
    await wait_role(cluster, 4, "voter")
    await writer.wait_for(20)
    await add_node(cluster, 5)
    await wait_role(cluster, 5, "voter")
    await writer.wait_for(20)
    leader = await cluster.leader()
    assert sorted(r["id"] for r in leader.membership.rows() if r["role"] == "voter") == [
        1,
        2,
        3,
        4,
        5,
    ]
    # Remove the leader itself (it hands off first), then another founding node.
    gone = leader.id
    await leader.membership.change("remove", gone)
    await cluster.nodes[gone].wait_for(lambda: cluster.nodes[gone].failed is not None, 20.0)
    assert cluster.nodes[gone].removed is not None
    await cluster.stop(gone)
    await writer.wait_for(20)
    other = next(i for i in (1, 2, 3) if i in cluster.nodes)
    leader = await cluster.leader()
    await leader.membership.change("remove", other)
    await cluster.nodes[other].wait_for(lambda: cluster.nodes[other].failed is not None, 20.0)
    await cluster.stop(other)
    await writer.wait_for(20)
    await writer.stop()
    leader = await cluster.leader()
    assert sorted(r["id"] for r in leader.membership.rows()) == sorted(cluster.nodes)
    assert len(cluster.nodes) == 3
    await converged(cluster, writer)


async def test_leader_transfer_under_load(cluster: InprocCluster) -> None:
    writer = Writer(cluster)
    writer.start()
    await writer.wait_for(20)
    leader = await cluster.leader()
    to = next(i for i in cluster.nodes if i != leader.id)
    follower = next(n for i, n in cluster.nodes.items() if i not in (leader.id, to))
    assert await follower.membership.transfer(to, timeout=10.0) == to  # asked of a follower
    assert (await cluster.leader()).id == to
    await writer.wait_for(20)
    await writer.stop()
    await converged(cluster, writer)


async def test_refusals_say_why(cluster: InprocCluster) -> None:
    node = next(iter(cluster.nodes.values()))
    with pytest.raises(MembershipError, match="already a member"):
        await node.membership.change("add", 2, "127.0.0.1:1")
    with pytest.raises(MembershipError, match="not a member"):
        await node.membership.change("promote", 9)
    with pytest.raises(MembershipError, match="bad peer address"):
        await node.membership.change("add", 9, "nowhere")
    with pytest.raises(MembershipError, match=r"not a voter|not a member"):
        await node.membership.transfer(9)


async def test_learner_stays_learner_until_promoted_and_replays_the_log(
    cluster: InprocCluster,
) -> None:
    writer = Writer(cluster)
    writer.start()
    await writer.wait_for(30)
    learner = await add_node(cluster, 4, auto_promote=False)
    await writer.wait_for(20)
    leader = await cluster.leader()
    await learner.wait_for(lambda: learner.applied >= leader.replica.commit_index - 5, 20.0)
    await wait_role(cluster, 4, "learner")
    assert 4 not in leader.replica.config.members  # it counts in no quorum
    # Promotion waits for what the leader checks: the learner's data dir registered and
    # its log caught up (applied alone does not say the registration reached the leader).
    await leader.wait_for(
        lambda: any(r["id"] == 4 and r["caught_up"] for r in leader.membership.rows()), 20.0
    )
    await leader.membership.change("promote", 4)
    await wait_role(cluster, 4, "voter")
    await writer.wait_for(10)
    await writer.stop()
    await converged(cluster, writer)


async def test_a_node_that_was_never_added_cannot_join(cluster: InprocCluster) -> None:
    port = free_ports(1)[0]
    config = NodeConfig(7, {7: ("127.0.0.1", port)}, cluster.root / "n7")
    with pytest.raises(JoinFailed, match="not a member yet"):
        await join_cluster(config, [cluster.members[1]], timeout=2.0)


async def test_a_removed_node_that_restarts_is_refused(cluster: InprocCluster) -> None:
    leader = await cluster.leader()
    victim = next(i for i in cluster.nodes if i != leader.id)
    await cluster.stop(victim)  # down while it is removed: it never hears of it
    await leader.membership.change("remove", victim)
    await cluster.start(victim)  # restarts on its old data dir
    node = cluster.nodes[victim]
    await node.wait_for(lambda: node.failed is not None, 20.0)
    assert node.removed is not None and "removed" in node.removed
    with contextlib.suppress(Exception):
        await cluster.stop(victim)


async def test_a_wiped_node_comes_back_as_a_voter_under_a_new_incarnation(
    cluster: InprocCluster,
) -> None:
    writer = Writer(cluster)
    writer.start()
    await writer.wait_for(20)
    leader = await cluster.leader()
    victim = next(i for i in cluster.nodes if i != leader.id)
    await cluster.stop(victim)
    shutil.rmtree(cluster.root / f"n{victim}")  # the disk is lost
    await cluster.start(victim)
    wiped = cluster.nodes[victim]
    # Its peers hold its earlier incarnation: it may never vote again as it is.
    await wiped.wait_for(lambda: wiped.replica.standing is Standing.LEARNER, 20.0)
    await writer.wait_for(10)
    leader = await cluster.leader()
    await leader.membership.change("remove", victim)
    await wiped.wait_for(lambda: wiped.failed is not None, 20.0)
    await cluster.stop(victim)
    shutil.rmtree(cluster.root / f"n{victim}")
    back = await add_node(cluster, victim)  # same id, new data dir, new peer port
    await wait_role(cluster, victim, "voter")
    assert back.replica.standing is Standing.VOTER
    await writer.wait_for(20)
    await writer.stop()
    await converged(cluster, writer)


async def test_a_learner_serves_linearizable_reads(cluster: InprocCluster) -> None:
    learner = await add_node(cluster, 4, auto_promote=False)
    leader = await cluster.leader()
    for i in range(5):
        await leader.submit(b"x%d" % i)
    seen = await learner.read(lambda sm: list(sm.items), timeout=10.0)
    assert seen[-5:] == [b"x%d" % i for i in range(5)]  # every write before the read
    assert 4 in leader.replica.config.learners


async def test_replace_a_dead_node_with_a_new_one_at_another_address(
    cluster: InprocCluster,
) -> None:
    writer = Writer(cluster)
    writer.start()
    await writer.wait_for(20)
    leader = await cluster.leader()
    dead = next(i for i in cluster.nodes if i != leader.id)
    old_address = cluster.members[dead]
    await cluster.stop(dead)  # the machine is gone for good
    await writer.wait_for(20)  # two of three voters carry on
    new = await add_node(cluster, 4)
    await wait_role(cluster, 4, "voter")
    leader = await cluster.leader()
    await leader.membership.change("remove", dead)  # a dead node needs no hand-off
    await writer.wait_for(20)
    await writer.stop()
    rows = leader.membership.rows()
    assert sorted(r["id"] for r in rows) == sorted(cluster.nodes) and dead not in cluster.nodes
    assert next(r for r in rows if r["id"] == 4)["address"] != "{}:{}".format(*old_address)
    assert new.replica.standing is Standing.VOTER
    await converged(cluster, writer)
