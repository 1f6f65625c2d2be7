"""The protocol core, one behaviour a test, driven through an in-memory network."""

import random

import pytest
from core_net import Net

from pyxos.core import NOOP, Ballot, Config, Options, Replica, Role, SlotValue, UsageError
from pyxos.core.messages import (
    Accepted,
    Commit,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Propose,
    Reject,
)
from pyxos.core.ready import HardState


def lone(node: int = 1, n: int = 3, **opts: int) -> Replica:
    return Replica(node, Config.of(range(1, n + 1)), random.Random(7), Options(**opts))


# ---------------------------------------------------------------- the Ready contract


def test_ready_twice_without_advance_raises() -> None:
    r = lone()
    r.campaign()
    ready = r.ready()
    with pytest.raises(UsageError):
        r.ready()
    with pytest.raises(UsageError):
        r.advance(type(ready)())
    r.advance(ready)
    assert not r.has_ready()


def test_promise_leaves_only_after_its_promise_is_persisted() -> None:
    r = lone(2)
    r.step(Prepare(1, Ballot(1, 1), 1))
    ready = r.ready()
    assert ready.persist.promised == Ballot(1, 1)
    assert ready.persist.must_sync
    assert not any(isinstance(m, Promise) for _, m in ready.messages)
    assert [type(m) for _, m in ready.persisted_messages] == [Promise]


def test_accepted_leaves_only_after_the_value_is_persisted() -> None:
    r = lone(2)
    r.step(Propose(1, Ballot(1, 1), 1, ((b"x",),), 0))
    ready = r.ready()
    assert ready.persist.must_sync
    assert [e.slot for e in ready.persist.entries] == [1]
    assert [type(m) for _, m in ready.persisted_messages] == [Accepted]
    assert not any(isinstance(m, Accepted) for _, m in ready.messages)


def test_candidate_counts_its_own_promise_only_after_advance() -> None:
    # One-node cluster: the only vote is our own, durable only after advance().
    r = Replica(1, Config.of([1]), random.Random(1))
    r.campaign()
    assert r.role is Role.CANDIDATE
    ready = r.ready()
    assert ready.persist.promised == r.ballot
    assert r.role is Role.CANDIDATE
    r.advance(ready)
    assert r.role is Role.LEADER


def test_single_node_commits_after_its_own_sync() -> None:
    r = Replica(1, Config.of([1]), random.Random(1))
    r.campaign()
    r.advance(r.ready())
    assert r.propose(b"a")
    ready = r.ready()
    assert ready.committed == []  # not chosen before it is durable here
    r.advance(ready)
    assert r.ready().committed == [(1, (b"a",))]


# ---------------------------------------------------------------- acceptor


def test_acceptor_rejects_prepare_below_its_promise() -> None:
    r = lone(2)
    r.step(Prepare(3, Ballot(5, 3), 1))
    r.advance(r.ready())
    r.step(Prepare(1, Ballot(4, 1), 1))
    ready = r.ready()
    assert (1, Reject(2, Ballot(4, 1), Ballot(5, 3))) in ready.messages
    assert not ready.persisted_messages
    assert r.promised == Ballot(5, 3)


def test_acceptor_rejects_proposals_below_its_promise() -> None:
    r = lone(2)
    r.step(Prepare(3, Ballot(5, 3), 1))
    r.advance(r.ready())
    r.step(Propose(1, Ballot(4, 1), 1, ((b"old",),), 0))
    ready = r.ready()
    assert (1, Reject(2, Ballot(4, 1), Ballot(5, 3))) in ready.messages
    assert 1 not in r.log


def test_promise_reports_every_accepted_slot_from_first_slot() -> None:
    r = lone(2)
    r.step(Propose(1, Ballot(1, 1), 3, ((b"c",), (b"d",), (b"e",)), 0))
    r.advance(r.ready())
    r.step(Prepare(3, Ballot(2, 3), 4))
    ready = r.ready()
    ((_, promise),) = ready.persisted_messages
    assert isinstance(promise, Promise)
    assert [sv.slot for sv in promise.accepted] == [4, 5]
    assert promise.accepted[0] == SlotValue(4, Ballot(1, 1), (b"d",))


def test_restarted_acceptor_keeps_its_promise_and_acceptances() -> None:
    state = HardState(Ballot(9, 3), [SlotValue(1, Ballot(9, 3), (b"v",))], 0, 0)
    r = Replica(2, Config.of([1, 2, 3]), random.Random(1), None, state)
    r.step(Prepare(1, Ballot(8, 1), 1))
    assert any(isinstance(m, Reject) for _, m in r.ready().messages)


# ---------------------------------------------------------------- proposer


def test_only_one_leader_is_elected() -> None:
    net = Net(5)
    net.tick(60)
    assert len(net.leaders()) == 1


def test_commands_are_chosen_and_applied_in_order_everywhere() -> None:
    net = Net(3)
    net.elect(1)
    for i in range(50):
        assert net.nodes[1 + i % 3].propose(f"c{i}".encode())
        net.settle()
    net.tick(4)
    expected = [f"c{i}".encode() for i in range(50)]
    for node in (1, 2, 3):
        assert net.commands(node) == expected
        slots = [s for s, _ in net.applied[node]]
        assert slots == list(range(1, len(slots) + 1))


def test_commands_queued_together_share_one_slot() -> None:
    net = Net(3)
    net.elect(1)
    for i in range(10):
        net.nodes[1].propose(f"c{i}".encode())
    net.settle()
    assert net.applied[1][-1][1] == tuple(f"c{i}".encode() for i in range(10))


def test_leader_keeps_a_window_of_slots_in_flight() -> None:
    net = Net(3, options=Options(window=4, max_batch_commands=1, busy_batch=1))
    net.elect(1)
    leader = net.nodes[1]
    for i in range(10):
        leader.propose(f"c{i}".encode())
    ready = leader.ready()
    proposes = [m for _, m in ready.messages if isinstance(m, Propose)]
    assert {len(p.values) for p in proposes} == {4}  # four slots at once, not one
    assert leader.pending_count == 6
    leader.advance(ready)


def _take(net: Net, node: int) -> list[Propose]:
    """Carry out one ``ready`` of ``node``; return the proposals it sent."""
    ready = net.process_one(node)
    sent = ready.messages + ready.persisted_messages
    return [m for _, m in sent if isinstance(m, Propose)]


def test_busy_leader_gathers_commands_behind_the_slot_in_flight() -> None:
    net = Net(3, options=Options(busy_batch=4))
    net.elect(1)
    leader = net.nodes[1]
    first = leader.commit_index + 1
    leader.propose(b"c0")
    # An idle leader proposes a lone command at once.
    assert {p.values for p in _take(net, 1)} == {((b"c0",),)}
    for i in range(1, 4):
        leader.propose(f"c{i}".encode())
    # Three wait, fewer than busy_batch, with a slot in flight: no new slot yet.
    assert leader.has_ready() is False or _take(net, 1) == []
    assert leader.pending_count == 3
    leader.propose(b"c4")  # the fourth opens a slot even with one in flight
    assert {p.values for p in _take(net, 1)} == {((b"c1", b"c2", b"c3", b"c4"),)}
    assert leader.pending_count == 0
    net.settle()
    slots = dict(net.applied[1])
    assert slots[first] == (b"c0",)
    assert slots[first + 1] == (b"c1", b"c2", b"c3", b"c4")
    assert net.commands(2) == net.commands(1)


def test_busy_leader_proposes_the_rest_once_the_slot_is_chosen() -> None:
    net = Net(3, options=Options(busy_batch=100))
    net.elect(1)
    leader = net.nodes[1]
    leader.propose(b"c0")
    assert len(_take(net, 1)) == 2
    leader.propose(b"c1")
    leader.propose(b"c2")
    assert leader.has_ready() is False or _take(net, 1) == []
    net.settle()  # the first slot is chosen, so the two waiting go out without more load
    assert leader.pending_count == 0
    assert net.commands(2)[-3:] == [b"c0", b"c1", b"c2"]
    assert net.applied[1][-1][1] == (b"c1", b"c2")


def test_new_leader_reproposes_the_highest_ballot_value_and_fills_holes() -> None:
    net = Net(3)
    # Node 2 accepted slot 1 at ballot 1.1 and slot 3 at ballot 2.3; slot 2 is a hole.
    n2 = net.nodes[2]
    n2.step(Propose(1, Ballot(1, 1), 1, ((b"old",),), 0))
    n2.step(Propose(3, Ballot(2, 3), 3, ((b"newer",),), 0))
    n2.advance(n2.ready())
    net.nodes[3].step(Propose(1, Ballot(1, 1), 1, ((b"stale",),), 0))
    net.nodes[3].advance(net.nodes[3].ready())
    net.isolate(3)
    net.elect(1)
    net.tick(4)
    assert [v for _, v in net.applied[1]] == [(b"old",), NOOP, (b"newer",)]


def test_rejected_leader_steps_down_and_backs_off() -> None:
    net = Net(3)
    net.elect(1)
    leader = net.nodes[1]
    before = leader._timeout
    leader.step(Reject(2, leader.ballot, Ballot(leader.ballot.round + 5, 2)))
    assert leader.role is Role.FOLLOWER
    assert leader._backoff == 1
    # The back-off timeout is drawn from a doubled range.
    assert leader._timeout >= 2 * net.options.election_ticks
    assert leader.max_seen > leader.ballot
    del before


def test_duelling_candidates_converge_on_one_leader() -> None:
    for seed in range(20):
        net = Net(3, seed=seed)
        net.nodes[1].campaign()
        net.nodes[2].campaign()
        net.nodes[3].campaign()
        net.settle()
        net.tick(200)
        assert len(net.leaders()) == 1, seed
        leader = net.leaders()[0]
        net.nodes[leader].propose(b"x")
        net.tick(3)
        assert all(b"x" in net.commands(n) for n in (1, 2, 3))


# ---------------------------------------------------------------- liveness helpers


def test_follower_that_hears_a_live_leader_denies_prevotes() -> None:
    net = Net(3)
    net.elect(1)
    net.tick(2)
    n2 = net.nodes[2]
    n2.step(PreVote(3, Ballot(50, 3)))
    replies = [m for _, m in n2.ready().messages if isinstance(m, PreVoteReply)]
    assert replies and not replies[0].granted


def test_isolated_node_does_not_raise_the_ballot() -> None:
    net = Net(3)
    net.elect(1)
    promised = net.nodes[3].promised
    net.isolate(3)
    net.tick(300)
    assert net.nodes[3].promised == promised  # only pre-votes went out
    net.heal()
    net.tick(10)
    assert net.leaders() == [1]
    assert net.nodes[3].leader == 1


def test_leader_that_loses_its_quorum_steps_down() -> None:
    net = Net(3)
    net.elect(1)
    net.isolate(1)
    net.tick(3 * net.options.election_ticks)
    assert net.nodes[1].role is not Role.LEADER
    assert len(net.leaders()) == 1 and net.leaders()[0] != 1


# ---------------------------------------------------------------- learner


def test_follower_learns_from_commit_only_values_accepted_at_that_ballot() -> None:
    r = lone(2)
    r.step(Propose(1, Ballot(1, 1), 1, ((b"a",),), 0))
    r.step(Propose(3, Ballot(2, 3), 2, ((b"b",),), 0))
    r.advance(r.ready())
    # Ballot 2.3 declares slots 1..2 chosen; slot 1 was accepted at 1.1, so unknown.
    r.step(Commit(3, Ballot(2, 3), 2, 1))
    assert r.commit_index == 0
    assert r.log[2].chosen


class CountingLog(dict[int, SlotValue]):
    """A replica log that counts lookups: the learner's work per message."""

    lookups = 0

    def get(self, key: int, default: object = None) -> object:  # type: ignore[override]
        CountingLog.lookups += 1
        return super().get(key, default)


def test_far_behind_follower_does_not_rescan_its_gap_on_every_message() -> None:
    # A follower that joins late accepts the leader's new slots but misses the old ones;
    # until catch-up fills the gap, each heartbeat and proposal says "chosen up to N".
    # Rescanning the whole gap each time made a rejoining node spin at 100% CPU.
    r = lone(2)
    r.log = CountingLog()
    ballot = Ballot(1, 1)
    gap = 5_000
    r.step(Propose(1, ballot, gap, ((b"x",),), gap))
    CountingLog.lookups = 0
    for i in range(200):
        r.step(Propose(1, ballot, gap + 1 + i, ((b"y",),), gap + i))
        r.step(Commit(1, ballot, gap + 1 + i, 0))
    assert r.commit_index == 0  # the hole below is still unknown
    assert CountingLog.lookups < gap + 10 * 200
    # A value stored below what was scanned is still learned: catch-up of slot 1..gap-1
    # at this ballot (a retransmission) makes everything through the commit chosen.
    r.step(Propose(1, ballot, 1, tuple((b"z",) for _ in range(gap - 1)), gap + 200))
    assert r.commit_index == gap + 200


def test_lagging_follower_catches_up() -> None:
    net = Net(3)
    net.elect(1)
    net.crash(3)
    for i in range(600):
        net.nodes[1].propose(f"c{i}".encode())
        if i % 7 == 0:
            net.settle()
    net.settle()
    net.restart(3)
    net.tick(10)
    assert net.commands(3) == net.commands(1)
    assert len(net.commands(3)) == 600


def test_compacted_leader_sends_a_snapshot() -> None:
    net = Net(3)
    net.elect(1)
    net.crash(3)
    for i in range(20):
        net.nodes[1].propose(f"c{i}".encode())
        net.settle()
    net.compact(1)
    assert net.nodes[1].snapshot_slot == 20 and not net.nodes[1].log
    net.restart(3)
    net.tick(4)
    assert (1, 3) in net.snapshots_sent
    assert net.commands(3) == net.commands(1)
    net.nodes[1].propose(b"after")
    net.tick(2)
    assert net.commands(3)[-1] == b"after"
    assert net.nodes[3].snapshot_slot == 20


def test_compact_beyond_applied_is_refused() -> None:
    r = lone()
    with pytest.raises(UsageError):
        r.compact(5)


# ---------------------------------------------------------------- reads


def test_leader_read_waits_for_a_quorum_round() -> None:
    net = Net(3)
    net.elect(1)
    net.nodes[1].propose(b"w")
    net.settle()
    net.isolate(1)
    net.nodes[1].read_index(7)
    net.settle()
    assert net.reads[1] == []  # no quorum confirmed it still leads
    net.heal()
    net.tick(2)
    assert net.reads[1] == [(7, 1)]


def test_follower_read_goes_through_the_leader() -> None:
    net = Net(3)
    net.elect(1)
    net.nodes[1].propose(b"w")
    net.settle()
    net.nodes[2].read_index(9)
    net.settle()
    assert net.reads[2] == [(9, 1)]


def test_read_fails_fast_without_a_leader() -> None:
    r = lone()
    r.read_index(3)
    assert r.ready().failed_reads == [3]


def test_new_leader_serves_no_read_until_phase1_values_are_chosen() -> None:
    net = Net(3)
    n2 = net.nodes[2]
    n2.step(Propose(3, Ballot(1, 3), 1, ((b"maybe-chosen",),), 0))
    n2.advance(n2.ready())
    # Phase 1 completes, but every Accepted for the re-proposed slot is lost.
    net.drop_if = lambda src, dst, m: isinstance(m, Accepted)
    net.elect(1)
    net.nodes[1].read_index(1)
    net.tick(4)
    assert net.reads[1] == []  # the heartbeat quorum alone is not enough
    net.drop_if = lambda src, dst, m: False
    net.tick(net.options.retransmit_ticks + 1)
    assert net.reads[1] == [(1, 1)]
    assert net.commands(1) == [b"maybe-chosen"]
