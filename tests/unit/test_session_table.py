"""The one session table behind both exactly-once wrappers (KV's RID and library mode)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxos.runtime.sessions import STALE_REPLY, SessionStateMachine, encode_request
from pyxos.session_table import SessionTable


def table(**kwargs: int) -> SessionTable:
    return SessionTable(stale_reply=b"stale", invalid_reply=b"invalid", **kwargs)


def test_a_retry_gets_the_first_reply_and_an_older_request_the_stale_one() -> None:
    t = table()
    assert t.cached(7, 1, now=1) is None
    t.record(7, 1, b"one", now=1)
    assert t.cached(7, 1, now=2) == b"one"
    assert t.cached(7, 2, now=3) is None
    t.record(7, 2, b"two", now=3)
    assert t.cached(7, 1, now=4) == b"stale"
    assert t.cached(8, 0, now=5) == b"invalid"  # a new client starts at 1
    assert SessionTable(stale_reply=b"s").cached(8, 0, now=5) is None  # unless no check is set


def test_idle_sessions_expire_by_log_position_and_any_use_counts() -> None:
    t = table(idle_limit=3)
    t.record(1, 1, b"a", now=1)
    t.record(2, 1, b"b", now=2)
    assert t.cached(1, 1, now=3) == b"a"  # a retry is a use
    t.expire(5)  # client 2 last used at 2: 3 entries ago, still kept
    assert len(t) == 2
    t.expire(6)
    assert [c for c, _ in t.items()] == [1]


def test_the_least_recently_used_session_goes_beyond_the_limit() -> None:
    t = table(max_sessions=2)
    t.record(1, 1, b"a", now=1)
    t.record(2, 1, b"b", now=2)
    assert t.cached(1, 1, now=3) == b"a"
    t.record(3, 1, b"c", now=4)
    assert [c for c, _ in t.items()] == [1, 3]


def test_load_restores_what_items_gave_in_the_same_order() -> None:
    t = table()
    for client in (5, 3, 9):
        t.record(client, 1, b"r%d" % client, now=client)
    copy = table()
    copy.load((c, s.seq, s.reply, s.last_used) for c, s in t.items())
    assert [(c, s.seq, s.reply, s.last_used) for c, s in copy.items()] == [
        (c, s.seq, s.reply, s.last_used) for c, s in t.items()
    ]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        table(max_sessions=0)


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def apply(self, command: bytes) -> bytes:
        self.n += 1
        return b"%d" % self.n

    def snapshot(self) -> bytes:
        return b"%d" % self.n

    def restore(self, data: bytes) -> None:
        self.n = int(data)


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4)), max_size=40))
def test_the_wrapper_applies_each_request_at_most_once(requests: list[tuple[int, int]]) -> None:
    inner = _Counter()
    sm = SessionStateMachine(inner, max_sessions=3, idle_limit=100)
    newest: dict[int, int] = {}
    replies: dict[tuple[int, int], bytes] = {}
    for client, seq in requests:
        reply = sm.apply(encode_request(client, seq, b"x"))
        if seq > newest.get(client, 0):
            newest[client] = seq
            replies[client, seq] = reply
            assert reply == b"%d" % inner.n  # applied now
        elif seq == newest[client]:
            assert reply == replies[client, seq]  # the first reply, not applied again
        else:
            assert reply == STALE_REPLY
    assert inner.n == len(replies)
    copy = SessionStateMachine(_Counter(), max_sessions=3, idle_limit=100)
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()
