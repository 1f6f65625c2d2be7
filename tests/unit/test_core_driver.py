"""The shared driver: group commit, release of persisted messages, own votes, commit index."""

from __future__ import annotations

import random

import pytest

from pyxos.core import Config, Replica
from pyxos.core.ballot import Ballot
from pyxos.core.driver import Driver, fresh_commits
from pyxos.core.messages import Accepted, Commit, Propose
from pyxos.core.replica import InvariantViolation


def follower() -> tuple[Replica, Driver]:
    r = Replica(2, Config.of([1, 2, 3]), random.Random(1))
    return r, Driver(r)


B1 = Ballot(1, 1)


def propose(slot: int, commit: int = 0) -> Propose:
    return Propose(1, B1, slot, ((b"c%d" % slot,),), commit)


def test_an_accepted_leaves_only_once_its_write_is_durable() -> None:
    r, d = follower()
    r.step(propose(1))
    work = d.take()
    assert work.write is not None and [e.slot for e in work.write.entries] == [1]
    assert not any(isinstance(m, Accepted) for _, m in work.send)
    released = d.written()
    assert [type(m) for _, m in released.send] == [Accepted]
    assert released.write is None


def test_batches_taken_during_a_write_share_the_next_one() -> None:
    r, d = follower()
    r.step(propose(1))
    first = d.take()
    assert first.write is not None
    for slot in (2, 3, 4):
        r.step(propose(slot))
        assert d.take().write is None  # waits: one write at a time
    assert d.in_flight == 4
    after_first = d.written()
    assert [type(m) for _, m in after_first.send] == [Accepted]
    assert after_first.write is not None
    assert [e.slot for e in after_first.write.entries] == [2, 3, 4]  # merged: one sync
    assert [m.first_slot for _, m in d.written().send] == [2, 3, 4]
    assert d.in_flight == 0


def test_a_batch_that_only_moves_the_commit_index_waits_for_the_next_write() -> None:
    r, d = follower()
    r.step(propose(1))
    d.take()
    d.written()
    r.step(propose(2, commit=1))  # slot 2, and slot 1 committed: entries and commit
    work = d.take()
    assert work.write is not None and work.write.commit_index == 1
    d.written()
    r.step(Commit(1, B1, 2, 0))  # only the commit index moves
    only = d.take()
    assert only.write is None and [s for s, _ in only.committed] == [2]
    r.step(propose(3, commit=2))
    assert (w := d.take().write) is not None and w.commit_index == 2


def test_a_lone_node_counts_its_own_vote_only_when_durable() -> None:
    r = Replica(1, Config.of([1]), random.Random(1))
    d = Driver(r)
    r.campaign()
    d.take()
    d.written()
    assert r.propose(b"x")
    work = d.take()
    assert work.committed == [] and work.write is not None
    released = d.written()
    assert [(b, s) for b, s in released.self_accepts] == [(r.ballot, 1)]
    assert [s for s, _ in d.take().committed] == [1]


def test_written_without_a_write_is_a_broken_invariant() -> None:
    _, d = follower()
    with pytest.raises(InvariantViolation):
        d.written()


def test_fresh_commits_skips_what_a_snapshot_covered_and_refuses_gaps() -> None:
    run = [(s, (b"%d" % s,)) for s in range(11, 16)]
    assert fresh_commits(run, 10) == run
    assert [s for s, _ in fresh_commits(run, 13)] == [14, 15]
    assert fresh_commits(run, 20) == []
    with pytest.raises(InvariantViolation):
        fresh_commits(run, 8)
