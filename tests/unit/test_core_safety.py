"""Schedules that once made replicas disagree about a chosen value, pinned as tests.

Each drives protocol cores by hand through the in-memory network so that the exact
interleaving the review found replays every time; each asserts what clients depend on:
every replica that applied a slot applied the same value, also after a restart.
"""

from __future__ import annotations

from core_net import Net

from pyxos.core import Options, Role
from pyxos.core.messages import Chosen, SnapshotRequest


def _applied_value(net: Net, node: int, slot: int) -> tuple[bytes, ...] | None:
    return dict(net.applied[node]).get(slot)


def _deliver_catch_up(net: Net, responder: int, asker: int) -> None:
    """A delayed ``SnapshotRequest`` from ``asker`` reaches ``responder``, and the answer
    comes back over links that are otherwise cut (a queued message outliving a partition).
    """
    net.nodes[responder].step(SnapshotRequest(asker, net.nodes[asker].commit_index))
    ready = net.nodes[responder].ready()
    answers = [m for dst, m in ready.messages if dst == asker and isinstance(m, Chosen)]
    net.nodes[responder].advance(ready)
    assert answers, "the responder had chosen slots to offer"
    for m in answers:
        net.nodes[asker].step(m)
    net.settle()


def test_stale_leader_learning_a_chosen_value_never_commits_it_under_its_own_ballot() -> None:
    # 5 nodes; node 1 leads, then is cut off with node 2. Node 2 accepts node 1's value v
    # in slot 2; {3,4,5} elect node 3, which chooses w in slot 2. A late catch-up answer
    # tells node 1 that w is chosen: node 1 must not then tell node 2 (which accepted v at
    # node 1's ballot) that slot 2 is committed at that ballot.
    net = Net(5)
    net.elect(1)
    net.nodes[1].propose(b"first")
    net.settle()
    cut = {(a, b) for a in (1, 2) for b in (3, 4, 5)}
    net.cut = cut | {(b, a) for a, b in cut}
    net.nodes[1].propose(b"v")
    net.settle()
    net.elect(3)
    net.nodes[3].propose(b"w")
    net.settle()
    assert _applied_value(net, 4, 2) == (b"w",)
    assert net.nodes[1].role is Role.LEADER  # no tick yet: it does not know it lost

    _deliver_catch_up(net, responder=4, asker=1)
    net.tick(3)

    values = {_applied_value(net, n, 2) for n in net.nodes} - {None}
    assert values == {(b"w",)}, f"slot 2 applied as {values}"


def test_stale_leader_never_overwrites_a_slot_it_learned_was_chosen() -> None:
    # 3 nodes, one slot at a time. Node 1 leads, is cut off; node 2 leads and chooses w in
    # slot 2. A late catch-up answer teaches node 1 that slot 2 holds w. Its next proposal
    # must not land in slot 2, or, after a restart, node 1 would apply its own value there.
    net = Net(3, options=Options(election_ticks=10, heartbeat_ticks=2, busy_batch=1))
    net.elect(1)
    net.nodes[1].propose(b"first")
    net.settle()
    net.isolate(1)
    net.elect(2)
    net.nodes[2].propose(b"w")
    net.settle()
    assert _applied_value(net, 3, 2) == (b"w",)

    _deliver_catch_up(net, responder=3, asker=1)
    net.nodes[1].propose(b"mine")
    net.settle()
    net.crash(1)
    net.restart(1)
    net.heal()
    net.tick(30)

    for node in net.nodes:
        assert _applied_value(net, node, 2) in (None, (b"w",)), f"node {node} diverged"
    assert _applied_value(net, 1, 2) == (b"w",)
