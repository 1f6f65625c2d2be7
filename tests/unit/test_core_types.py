"""Ballots, configurations and the message codec."""

import contextlib

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pyxos.core import Ballot, Config, ConfigError, SlotValue, decode, encode
from pyxos.core.messages import Accepted, Commit, Forward, Prepare, Promise, Propose, Reject

ballots = st.builds(Ballot, st.integers(0, 2**40), st.integers(1, 1000))
values = st.lists(st.binary(max_size=20), max_size=4).map(tuple)


@given(ballots, st.integers(1, 1000))
def test_successor_is_higher_and_carries_the_node(b: Ballot, node: int) -> None:
    s = b.successor(node)
    assert s > b
    assert s.node == node
    # Nothing of this node lies strictly between b and its successor.
    assert Ballot(s.round - 1, node) <= b or s.round == b.round


@given(ballots, ballots)
def test_ballots_are_totally_ordered_by_round_then_node(a: Ballot, b: Ballot) -> None:
    assert (a < b) == ((a.round, a.node) < (b.round, b.node))
    assert (a == b) == ((a.round, a.node) == (b.round, b.node))


def test_two_nodes_never_issue_the_same_ballot() -> None:
    seen = Ballot(0, 0)
    issued: set[tuple[int, int]] = set()
    for i in range(200):
        node = 1 + i % 3
        seen = seen.successor(node)
        assert (seen.round, seen.node) not in issued
        issued.add((seen.round, seen.node))


def test_config_majorities() -> None:
    c = Config.of([3, 1, 2])
    assert c.members == (1, 2, 3)
    assert (c.q1, c.q2) == (2, 2)
    assert c.is_phase1_quorum([1, 3])
    assert not c.is_phase2_quorum([2])
    assert not c.is_phase2_quorum([2, 2, 9])  # duplicates and strangers do not count
    assert c.peers_of(2) == (1, 3)


def test_flexible_quorums_must_intersect() -> None:
    c = Config((1, 2, 3, 4), q1=3, q2=2)
    assert c.is_phase2_quorum([1, 4]) and not c.is_phase1_quorum([1, 4])
    with pytest.raises(ConfigError):
        Config((1, 2, 3, 4), q1=2, q2=2)
    with pytest.raises(ConfigError):
        Config(())
    with pytest.raises(ConfigError):
        Config((1, 1, 2))
    with pytest.raises(ConfigError):
        Config((0, 1, 2))


messages = st.one_of(
    st.builds(Prepare, st.integers(1, 9), ballots, st.integers(0, 10**9)),
    st.builds(
        Promise,
        st.integers(1, 9),
        ballots,
        st.lists(
            st.builds(SlotValue, st.integers(1, 10**6), ballots, values, st.booleans()), max_size=3
        ).map(tuple),
        st.integers(0, 10**6),
        st.integers(0, 10**6),
    ),
    st.builds(
        Propose,
        st.integers(1, 9),
        ballots,
        st.integers(1, 10**6),
        st.lists(values, max_size=3).map(tuple),
        st.integers(0, 10**6),
    ),
    st.builds(Accepted, st.integers(1, 9), ballots, st.integers(1, 99), st.integers(1, 99)),
    st.builds(Reject, st.integers(1, 9), ballots, ballots),
    st.builds(Commit, st.integers(1, 9), ballots, st.integers(0, 99), st.integers(0, 99)),
    st.builds(Forward, st.integers(1, 9), st.lists(st.binary(), max_size=3).map(tuple)),
)


@given(messages)
def test_codec_round_trip(m: object) -> None:
    assert decode(encode(m)) == m  # type: ignore[arg-type]


@given(st.binary(max_size=64))
@example(b"\x91\xa2\x00\x80")  # invalid UTF-8 in a string: msgspec raises UnicodeDecodeError
@example(b"\x91" * 2000 + b"\xc0")  # nesting deep enough for RecursionError
def test_decoding_garbage_raises_only_msgspec_errors(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        decode(data)


def test_unknown_message_kind_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode(["nope", 1, 2]))
