"""Expiry across replicas whose nodes' clocks disagree, under leader changes.

A small model of the cluster around real :class:`KVStateMachine` replicas: nodes with skewed
clocks stamp the writes they take, the current leader proposes clock ticks when a key is
due by its clock, and a node serving a read first puts a tick through the log when the read
touches a key that is due by its own clock (what the server does). Replicas apply the one
log at their own pace; one of them is rebuilt from another's snapshot on the way.
Hypothesis draws the skews, the schedule and the interleaving. What must hold:

- replicas at the same applied index have equal state digests, and so equal clocks;
- no resurrection: once any read, on any node, reported a key gone, no later read does
  not (keys are written once here, so nothing may bring one back);
- a read reports a key present only while its expiry time is ahead of the reading node's
  clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxos.kv import KVStateMachine, encode_request

T0 = 1_700_000_000_000
NODES = 3


@dataclass
class Cluster:
    skews: list[int]
    log: list[bytes] = field(default_factory=list)
    replicas: list[KVStateMachine] = field(
        default_factory=lambda: [KVStateMachine() for _ in range(NODES)]
    )
    positions: list[int] = field(default_factory=lambda: [0] * NODES)
    digests: dict[int, str] = field(default_factory=lambda: {0: KVStateMachine().digest()})
    leader: int = 0
    time: int = T0
    gone: set[bytes] = field(default_factory=set)
    written: dict[bytes, int] = field(default_factory=dict)
    tick_on_read: bool = True
    """False: a deliberately broken node that hides a key past its time by its own clock
    without putting a tick through the log (the checks must catch it)."""

    def clock(self, node: int) -> int:
        return self.time + self.skews[node]

    def catch_up(self, node: int, upto: int | None = None) -> None:
        target = len(self.log) if upto is None else min(upto, len(self.log))
        sm = self.replicas[node]
        while self.positions[node] < target:
            sm.apply(self.log[self.positions[node]])
            self.positions[node] += 1
            index = self.positions[node]
            digest = sm.digest()
            assert self.digests.setdefault(index, digest) == digest, f"diverged at {index}"

    def write(self, node: int, key: bytes, ttl: int) -> None:
        self.written[key] = ttl
        argv = [b"SET", key, b"v", b"PX", b"%d" % ttl]
        self.log.append(encode_request(argv, time=self.clock(node)))

    def leader_tick(self) -> None:
        node = self.leader
        self.catch_up(node)
        due = self.replicas[node].next_expiry()
        if due is not None and due <= self.clock(node):
            self.log.append(encode_request([], time=self.clock(node)))

    def read(self, node: int, key: bytes) -> None:
        self.catch_up(node)  # the read index: everything committed so far
        sm, clock = self.replicas[node], self.clock(node)
        hidden = False
        if sm.due([b"GET", key], 0, clock):
            if self.tick_on_read:
                self.log.append(encode_request([], time=clock))
                self.catch_up(node)
            else:
                hidden = True
        present = not hidden and sm.read([b"EXISTS", key], clock=clock) == b":1\r\n"
        if key in self.gone:
            assert not present, f"{key!r} came back on node {node}"
        if present:
            at = sm.dbs[0].expires[key]
            assert at > clock, "a key past its time by the reader's clock was reported"
        elif key in self.written:
            self.gone.add(key)

    def rebuild(self, node: int, source: int) -> None:
        self.catch_up(source)
        fresh = KVStateMachine()
        fresh.restore(self.replicas[source].snapshot())
        self.replicas[node] = fresh
        self.positions[node] = self.positions[source]
        assert fresh.digest() == self.digests[self.positions[source]]


node_st = st.integers(0, NODES - 1)
key_st = st.integers(0, 5).map(lambda i: b"k%d" % i)
events = st.one_of(
    st.tuples(st.just("write"), node_st, st.integers(1, 3000)),
    st.tuples(st.just("advance"), st.integers(0, 1500)),
    st.tuples(st.just("leader"), node_st),
    st.tuples(st.just("tick")),
    st.tuples(st.just("read"), node_st, key_st),
    st.tuples(st.just("lag"), node_st, st.integers(0, 3)),
    st.tuples(st.just("rebuild"), node_st, node_st),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-2000, 2000), min_size=NODES, max_size=NODES), st.lists(events))
def test_replicas_agree_and_no_key_comes_back(skews: list[int], schedule: list[tuple]) -> None:
    cluster = Cluster(skews)
    next_key = 0
    for event in schedule:
        kind = event[0]
        if kind == "write":
            # Keys are written once, so "gone" is forever; which key a read asks for is
            # drawn from the first few, written or not.
            cluster.write(event[1], b"k%d" % next_key, event[2])
            next_key += 1
        elif kind == "advance":
            cluster.time += event[1]
        elif kind == "leader":
            cluster.leader = event[1]
        elif kind == "tick":
            cluster.leader_tick()
        elif kind == "read":
            cluster.read(event[1], event[2])
        elif kind == "lag":
            node = event[1]
            cluster.catch_up(node, cluster.positions[node] + event[2])
        elif kind == "rebuild" and event[1] != event[2]:
            cluster.rebuild(event[1], event[2])
    for node in range(NODES):
        cluster.catch_up(node)
    assert len({sm.digest() for sm in cluster.replicas}) == 1
    assert len({sm.now for sm in cluster.replicas}) == 1


def test_a_slow_leader_clock_delays_expiry_but_a_fast_reader_does_not_see_the_key() -> None:
    cluster = Cluster([-1000, 0, 500])
    cluster.write(1, b"k", 100)  # expires at T0 + 100 by node 2's clock
    cluster.time += 200
    cluster.leader_tick()  # the leader (node 1, 1 s behind) thinks nothing is due
    cluster.catch_up(1)
    assert cluster.replicas[1].read([b"EXISTS", b"k"]) == b":1\r\n"
    cluster.read(2, b"k")  # node 3's clock is ahead: it ticks, and the key is gone
    assert b"k" in cluster.gone
    for node in range(NODES):
        cluster.read(node, b"k")  # and stays gone for everyone, whatever their clock


def test_the_checks_catch_a_node_that_expires_keys_by_its_own_clock_alone() -> None:
    cluster = Cluster([-1000, 0, 500], tick_on_read=False)
    cluster.write(1, b"k", 100)
    cluster.time += 200
    cluster.read(2, b"k")  # hidden by node 3's fast clock, but not deleted by the log
    assert b"k" in cluster.gone
    with pytest.raises(AssertionError, match="came back"):
        cluster.read(0, b"k")  # node 1's slow clock still has it
