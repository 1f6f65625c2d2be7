"""Membership changes in the core: the history's rules, and changes on a live network."""

from __future__ import annotations

import pytest
from core_net import Net

from pyxos.core import Config, Ready, Role
from pyxos.core.membership import Change, History, as_change, change_value
from pyxos.storage.batch import DurableImage


def founding(n: int = 3, delay: int = 4) -> History:
    return History.founding(Config.of(range(1, n + 1)), delay, {1: "a:1", 2: "a:2", 3: "a:3"})


# ---------------------------------------------------------------------- the history


def test_a_change_governs_from_its_slot_plus_the_delay() -> None:
    h, error = founding().apply(10, Change("add", 4, "a:4"))
    assert error is None
    assert h.at(13).version == 0 and h.at(14).version == 10
    new = h.latest.member(4)
    assert new is not None and not new.voter and new.since == 10
    assert new.registrars == (1, 2, 3)  # the voters when it was added
    assert h.latest.config().members == (1, 2, 3)  # a learner counts in no quorum
    h2, error = h.apply(20, Change("promote", 4))
    assert error is None and h2.at(24).config().members == (1, 2, 3, 4)
    assert h2.at(24).config().q2 == 3


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (Change("add", 2, "a:9"), "node 2 is already a member (voter)"),
        (Change("add", 4, "a:1"), "address a:1 is already a member's"),
        (Change("promote", 2), "node 2 is already a voter"),
        (Change("remove", 9), "node 9 is not a member"),
        (Change("add", 4, "a:4", base=3), "another membership change came first; retry"),
        (Change("rename", 4), "unknown membership change 'rename'"),
    ],
)
def test_a_change_that_cannot_apply_is_refused_with_the_reason(change: Change, error: str) -> None:
    h = founding()
    after, why = h.apply(10, change)
    assert why == error and after is h


def test_the_last_voter_cannot_be_removed() -> None:
    h = History.founding(Config.of([1]), 2)
    assert h.check(Change("remove", 1)) == "node 1 is the last voter: it cannot be removed"


def test_a_replayed_change_is_not_applied_twice_and_removal_marks_the_node_gone() -> None:
    h, _ = founding().apply(10, Change("remove", 3))
    assert h.gone == (3,)
    again, error = h.apply(10, Change("remove", 3))
    assert again is h and error is None
    back, error = h.apply(12, Change("add", 3, "b:3"))
    assert error is None and back.gone == ()
    member = back.latest.member(3)
    assert member is not None and member.since == 12 and member.address == "b:3"


def test_history_round_trips_and_trims_epochs_no_slot_needs() -> None:
    h, _ = founding().apply(10, Change("add", 4, "a:4"))
    assert History.decode(h.encode()) == h
    assert len(h.trim(12).epochs) == 2
    assert h.trim(14).epochs == (h.latest,)


def test_change_values_are_recognised_and_commands_are_not() -> None:
    change = Change("add", 4, "a:4", token=5)
    assert as_change(change_value(change)) == change
    assert as_change((b"SET", b"k")) is None


# ---------------------------------------------------------------------- on a network


class MemberNet(Net):
    """The test network, recording change outcomes, with nodes that can be added."""

    def __init__(self, n: int = 3) -> None:
        super().__init__(n)
        self.changes: list[tuple[int, Change, str | None]] = []
        self.errors: list[tuple[int, str]] = []
        self.down |= {n + 1, n + 2}  # not started: messages to them are lost

    def process_one(self, i: int) -> Ready:
        ready = super().process_one(i)
        if i == self.leader_id():
            self.changes.extend(ready.changes)
        self.errors.extend(ready.change_errors)
        return ready

    def leader_id(self) -> int | None:
        leaders = self.leaders()
        return max(leaders, key=lambda i: self.nodes[i].ballot) if leaders else None

    def boot(self, i: int) -> None:
        """Start added node ``i`` on a new data dir holding the cluster's membership."""
        leader = self.leader_id()
        assert leader is not None
        image = DurableImage(1000 + i, membership=self.nodes[leader].history.encode())
        self.disks[i] = image
        self.down.discard(i)
        self.nodes[i] = self._make(i, image.recover())
        for table in (self.applied, self.reads, self.failed_reads):
            table[i] = []

    def commands(self, node: int) -> list[bytes]:
        """The client commands node ``node`` applied (changes are log entries of their own)."""
        return [c for _, v in self.applied[node] if as_change(v) is None for c in v]

    def write(self, leader: int, *commands: bytes) -> None:
        for c in commands:
            assert self.nodes[leader].propose(c)
        self.tick(3)

    def until(self, what: object, ticks: int = 300) -> None:
        for _ in range(ticks):
            if callable(what) and what():
                return
            self.tick()
        raise AssertionError("the condition never held")


def test_grow_promote_and_remove_the_leader_with_no_write_lost() -> None:
    net = MemberNet(3)
    net.elect(1)
    net.write(1, b"a", b"b")
    net.nodes[1].change_membership(Change("add", 4, "a:4", token=1))
    net.until(lambda: any(c.token == 1 for _, c, _ in net.changes))
    net.boot(4)
    net.until(lambda: net.commands(4)[:2] == [b"a", b"b"])
    net.until(lambda: net.nodes[4].voter)  # registered by a majority of its registrars
    net.nodes[1].change_membership(Change("promote", 4, token=2))
    net.until(lambda: 4 in net.nodes[1].config.members)
    net.write(1, b"c")
    # Removing the leader: it hands off to an up-to-date voter first.
    net.nodes[1].change_membership(Change("remove", 1, token=3))
    net.until(lambda: net.nodes[1].removed is not None)
    net.until(lambda: net.leader_id() in (2, 3, 4))
    leader = net.leader_id()
    assert leader is not None and net.nodes[leader].config.members == (2, 3, 4)
    net.write(leader, b"d")
    net.until(lambda: all(net.commands(i)[-1:] == [b"d"] for i in (2, 3, 4)))
    for i in (2, 3, 4):
        assert net.commands(i) == [b"a", b"b", b"c", b"d"]
    assert net.nodes[1].role is not Role.LEADER
    assert net.errors == []


def test_a_second_change_and_a_lagging_promotion_are_refused_clearly() -> None:
    net = MemberNet(3)
    net.elect(1)
    net.nodes[1].change_membership(Change("add", 4, "a:4", token=1))
    net.nodes[1].change_membership(Change("add", 5, "a:5", token=2))
    net.settle()
    assert (2, "another membership change is in progress; retry") in net.errors
    net.until(lambda: any(c.token == 1 for _, c, _ in net.changes))
    net.tick(10)  # the change takes effect
    # Node 4 never started: it cannot be promoted, asked through a follower.
    net.nodes[2].change_membership(Change("promote", 4, token=3))
    net.until(lambda: any(t == 3 for t, _ in net.errors))
    error = dict(net.errors)[3]
    assert "node 4 has not caught up" in error


def test_leader_transfer_hands_over_to_the_named_voter() -> None:
    net = MemberNet(3)
    net.elect(1)
    net.write(1, b"x")
    net.nodes[2].transfer_leadership(3, token=9)  # asked at a follower: forwarded
    net.until(lambda: net.leader_id() == 3)
    net.write(3, b"y")
    net.until(lambda: all(net.commands(i) == [b"x", b"y"] for i in (1, 2, 3)))
    assert net.errors == []


def test_a_transfer_to_a_non_voter_is_refused() -> None:
    net = MemberNet(3)
    net.elect(1)
    net.nodes[1].transfer_leadership(7, token=4)
    net.settle()
    assert net.errors == [(4, "node 7 is not a voter")]
