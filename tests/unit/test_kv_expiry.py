"""Expiry in the state machine: time only from request stamps, TTL options and errors,
deletion by the log, and what reads see at the edge of a key's time."""

from __future__ import annotations

import pytest

from pyxos.kv import KVStateMachine, encode_request

T0 = 1_700_000_000_000  # a plausible wall clock, ms
OK = b"+OK\r\n"
NULL = b"$-1\r\n"


def run(sm: KVStateMachine, *argv: str | bytes, time: int = 0, db: int = 0) -> bytes:
    words = [a.encode() if isinstance(a, str) else a for a in argv]
    return sm.apply(encode_request(words, time=time, db=db))


def tick(sm: KVStateMachine, time: int) -> bytes:
    return sm.apply(encode_request([], time=time))


def integer(reply: bytes) -> int:
    assert reply.startswith(b":"), reply
    return int(reply[1:-2])


@pytest.fixture
def sm() -> KVStateMachine:
    return KVStateMachine()


def test_the_clock_is_the_largest_stamp_and_never_goes_back(sm: KVStateMachine) -> None:
    assert sm.now == 0
    tick(sm, T0)
    assert sm.now == T0
    tick(sm, T0 - 5000)  # a node whose clock is behind: ignored
    assert sm.now == T0
    run(sm, "SET", "k", "v", time=T0 + 7)
    assert sm.now == T0 + 7
    run(sm, "SET", "k", "v")  # an unstamped command leaves it alone
    assert sm.now == T0 + 7


def test_relative_ttls_count_from_the_replicated_clock(sm: KVStateMachine) -> None:
    tick(sm, T0 + 1000)
    # The command's own stamp is behind the replicated clock: the TTL still counts from
    # the clock, so no replica could see the key as already expired.
    assert run(sm, "SET", "k", "v", "EX", "10", time=T0) == OK
    assert integer(run(sm, "PEXPIRETIME", "k")) == T0 + 1000 + 10_000
    assert integer(run(sm, "PTTL", "k")) == 10_000
    assert integer(run(sm, "TTL", "k")) == 10
    assert run(sm, "PSETEX", "p", "1500", "v", time=T0 + 1000) == OK
    assert integer(run(sm, "PEXPIRETIME", "p")) == T0 + 2500
    assert integer(run(sm, "EXPIRETIME", "p")) == (T0 + 2500 + 500) // 1000


def test_a_due_key_is_deleted_by_the_entry_that_reaches_its_time(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", "PX", "100", time=T0)
    run(sm, "SET", "forever", "v", time=T0)
    assert sm.read([b"GET", b"k"]) == b"$1\r\nv\r\n"
    tick(sm, T0 + 99)
    assert sm.read([b"EXISTS", b"k"]) == b":1\r\n"
    tick(sm, T0 + 100)
    assert sm.read([b"EXISTS", b"k"]) == b":0\r\n"
    assert sm.read([b"DBSIZE"]) == b":1\r\n"
    assert sm.expired_keys == 1


def test_reads_ask_for_a_tick_only_for_keys_past_their_time(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", "PX", "100", time=T0)
    run(sm, "SET", "other", "v", time=T0)
    assert not sm.due([b"GET", b"k"], 0, T0 + 99)
    assert sm.due([b"GET", b"k"], 0, T0 + 100)
    assert sm.due([b"MGET", b"other", b"k"], 0, T0 + 100)
    assert not sm.due([b"GET", b"other"], 0, T0 + 100)
    assert not sm.due([b"GET", b"k"], 1, T0 + 100)  # another database
    assert sm.due([b"DBSIZE"], 0, T0 + 100)  # keyless reads look at everything
    assert sm.due([b"OBJECT", b"ENCODING", b"k"], 0, T0 + 100)
    assert not sm.due([b"OBJECT", b"ENCODING", b"other"], 0, T0 + 100)
    tick(sm, T0 + 100)
    assert not sm.due([b"GET", b"k"], 0, T0 + 100)
    assert not sm.expiring


def test_local_reads_count_ttl_down_from_the_reading_nodes_clock(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", "EX", "100", time=T0)
    assert sm.read([b"PTTL", b"k"], clock=T0 + 30_000) == b":70000\r\n"
    assert sm.read([b"PTTL", b"k"], clock=T0 - 30_000) == b":100000\r\n"  # never above the TTL
    assert sm.read([b"PTTL", b"k"]) == b":100000\r\n"
    assert sm.clock == sm.now == T0  # a read leaves the replicated clock alone


@pytest.mark.parametrize(
    ("argv", "reply"),
    [
        (["SET", "k", "v", "EX", "0"], b"-ERR invalid expire time in 'set' command\r\n"),
        (["SET", "k", "v", "PX", "-5"], b"-ERR invalid expire time in 'set' command\r\n"),
        (["SET", "k", "v", "EX", "x"], b"-ERR value is not an integer or out of range\r\n"),
        (
            ["SET", "k", "v", "EX", "9223372036854776"],
            b"-ERR invalid expire time in 'set' command\r\n",
        ),
        (
            ["SET", "k", "v", "PX", "9223372036854775807"],
            b"-ERR invalid expire time in 'set' command\r\n",
        ),
        (["SET", "k", "v", "EX", "10", "PX", "10"], b"-ERR syntax error\r\n"),
        (["SET", "k", "v", "KEEPTTL", "EX", "10"], b"-ERR syntax error\r\n"),
        (["SETEX", "k", "0", "v"], b"-ERR invalid expire time in 'setex' command\r\n"),
        (["PSETEX", "k", "0", "v"], b"-ERR invalid expire time in 'psetex' command\r\n"),
        (["EXPIRE", "k", "10", "NX", "XX"], b"-ERR NX and XX, GT or LT options at the same time"
         b" are not compatible\r\n"),
        (["EXPIRE", "k", "10", "GT", "LT"], b"-ERR GT and LT options at the same time are not"
         b" compatible\r\n"),
        (["EXPIRE", "k", "10", "bogus"], b"-ERR Unsupported option bogus\r\n"),
        (
            ["EXPIRE", "k", "9223372036854776"],
            b"-ERR invalid expire time in 'expire' command\r\n",
        ),
        (
            ["PEXPIRE", "k", "9223372036854775807"],
            b"-ERR invalid expire time in 'pexpire' command\r\n",
        ),
        (["GETEX", "k", "NX"], b"-ERR syntax error\r\n"),
        (["GETEX", "k", "PERSIST", "EX", "1"], b"-ERR syntax error\r\n"),
    ],
)  # fmt: skip
def test_expiry_errors(sm: KVStateMachine, argv: list[str], reply: bytes) -> None:
    run(sm, "SET", "k", "v", time=T0)
    assert run(sm, *argv, time=T0) == reply
    assert run(sm, "GET", "k") == b"$1\r\nv\r\n"


def test_expire_options(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", time=T0)
    assert run(sm, "EXPIRE", "k", "100", "XX", time=T0) == b":0\r\n"
    assert run(sm, "EXPIRE", "k", "100", "GT", time=T0) == b":0\r\n"  # no TTL counts as infinite
    assert run(sm, "EXPIRE", "k", "100", "NX", time=T0) == b":1\r\n"
    assert run(sm, "EXPIRE", "k", "200", "NX", time=T0) == b":0\r\n"
    assert run(sm, "EXPIRE", "k", "50", "GT", time=T0) == b":0\r\n"
    assert run(sm, "EXPIRE", "k", "200", "GT", time=T0) == b":1\r\n"
    assert run(sm, "EXPIRE", "k", "300", "LT", time=T0) == b":0\r\n"
    assert run(sm, "PEXPIRE", "k", "1000", "lt", "xx", time=T0) == b":1\r\n"
    assert integer(run(sm, "PTTL", "k")) == 1000
    assert run(sm, "EXPIRE", "missing", "10") == b":0\r\n"
    assert run(sm, "PERSIST", "k") == b":1\r\n"
    assert run(sm, "PERSIST", "k") == b":0\r\n"
    assert run(sm, "TTL", "k") == b":-1\r\n"
    assert run(sm, "TTL", "missing") == b":-2\r\n"
    assert run(sm, "EXPIRETIME", "k") == b":-1\r\n"


def test_expire_in_the_past_deletes_at_once(sm: KVStateMachine) -> None:
    run(sm, "MSET", "a", "1", "b", "2", "c", "3", time=T0)
    assert run(sm, "EXPIRE", "a", "-1", time=T0) == b":1\r\n"
    assert run(sm, "PEXPIREAT", "b", str(T0 - 1), time=T0) == b":1\r\n"
    assert run(sm, "SET", "c", "new", "PXAT", str(T0), time=T0) == OK
    assert run(sm, "MGET", "a", "b", "c") == b"*3\r\n$-1\r\n$-1\r\n$-1\r\n"


def test_which_writes_keep_the_ttl(sm: KVStateMachine) -> None:
    def has_ttl(key: str) -> bool:
        return integer(run(sm, "PTTL", key)) > 0

    for key in ("a", "b", "c", "d", "e", "f", "g"):
        run(sm, "SET", key, "1", "EX", "100", time=T0)
    run(sm, "INCR", "a")
    run(sm, "APPEND", "b", "x")
    run(sm, "SETRANGE", "c", "0", "2")
    run(sm, "SET", "d", "2", "KEEPTTL")
    assert all(has_ttl(k) for k in "abcd")
    run(sm, "SET", "e", "2")
    run(sm, "GETSET", "f", "2")
    run(sm, "MSET", "g", "2")
    assert not any(has_ttl(k) for k in "efg")


def test_getex(sm: KVStateMachine) -> None:
    assert run(sm, "GETEX", "missing", "EX", "0", time=T0) == NULL  # missing wins over errors
    run(sm, "SET", "k", "v", time=T0)
    assert run(sm, "GETEX", "k", "EX", "0", time=T0) == (
        b"-ERR invalid expire time in 'getex' command\r\n"
    )
    assert run(sm, "GETEX", "k", "PX", "500", time=T0) == b"$1\r\nv\r\n"
    assert integer(run(sm, "PTTL", "k")) == 500
    assert run(sm, "GETEX", "k", "PERSIST", time=T0) == b"$1\r\nv\r\n"
    assert run(sm, "TTL", "k") == b":-1\r\n"
    assert run(sm, "GETEX", "k", "PXAT", str(T0), time=T0) == b"$1\r\nv\r\n"
    assert run(sm, "EXISTS", "k") == b":0\r\n"


def test_rename_move_and_copy_carry_the_ttl(sm: KVStateMachine) -> None:
    run(sm, "SET", "a", "1", "PX", "5000", time=T0)
    assert run(sm, "RENAME", "a", "b", time=T0) == OK
    assert integer(run(sm, "PTTL", "b")) == 5000
    assert run(sm, "COPY", "b", "c", "DB", "3", time=T0) == b":1\r\n"
    assert integer(run(sm, "PTTL", "c", db=3)) == 5000
    assert run(sm, "MOVE", "b", "7", time=T0) == b":1\r\n"
    assert integer(run(sm, "PTTL", "b", db=7)) == 5000
    tick(sm, T0 + 5000)
    assert run(sm, "EXISTS", "b", db=7) == b":0\r\n"
    assert run(sm, "EXISTS", "c", db=3) == b":0\r\n"


def test_swapdb_keeps_ttls_with_their_keys(sm: KVStateMachine) -> None:
    run(sm, "SET", "a", "1", "PX", "100", time=T0)
    run(sm, "SET", "b", "1", "PX", "200", time=T0, db=1)
    assert run(sm, "SWAPDB", "0", "1") == OK
    tick(sm, T0 + 100)
    assert run(sm, "EXISTS", "b") == b":1\r\n"
    assert run(sm, "EXISTS", "a", db=1) == b":0\r\n"
    tick(sm, T0 + 200)
    assert run(sm, "EXISTS", "b") == b":0\r\n"


def test_ttls_survive_snapshots_and_digests_see_them(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", "PX", "100", time=T0)
    run(sm, "SET", "j", "v", "PX", "300", time=T0, db=5)
    copy = KVStateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    assert copy.now == sm.now == T0
    plain = KVStateMachine()
    plain.apply(encode_request([b"SET", b"k", b"v"], time=T0))
    plain.apply(encode_request([b"SET", b"j", b"v"], time=T0, db=5))
    assert plain.digest() != sm.digest()  # same values, no TTLs
    for m in (sm, copy):
        tick(m, T0 + 100)
    assert copy.digest() == sm.digest()
    assert copy.read([b"DBSIZE"]) == b":0\r\n"
    assert copy.read([b"DBSIZE"], db=5) == b":1\r\n"


def test_many_ttl_changes_keep_the_heap_small(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v", time=T0)
    for i in range(10_000):
        run(sm, "PEXPIRE", "k", str(10_000 + i), time=T0)
    assert len(sm._heap) < 6000
    tick(sm, T0 + 19_998)
    assert run(sm, "EXISTS", "k") == b":1\r\n"
    tick(sm, T0 + 19_999)
    assert run(sm, "EXISTS", "k") == b":0\r\n"
