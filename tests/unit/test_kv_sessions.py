"""Exactly-once sessions: retries answered from the cache, stale requests refused, and
sessions expiring by log position (never by clock) and by least-recent use."""

from __future__ import annotations

from pyxos.kv import KVStateMachine, encode_request

STALE = b"-ERR stale request sequence\r\n"


def req(client: int, seq: int, *argv: str) -> bytes:
    return encode_request([a.encode() for a in argv], client_id=client, seq=seq)


def noop(sm: KVStateMachine, count: int) -> None:
    """Apply ``count`` session-less entries to move the log position forward."""
    for _ in range(count):
        sm.apply(req(0, 0, "EXISTS", "x"))


def test_retry_returns_cached_reply_without_executing_again() -> None:
    sm = KVStateMachine()
    assert sm.apply(req(7, 1, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(7, 1, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(0, 0, "GET", "n")) == b"$1\r\n1\r\n"  # incremented once


def test_retry_after_other_clients_wrote() -> None:
    sm = KVStateMachine()
    assert sm.apply(req(1, 1, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(2, 1, "INCR", "n")) == b":2\r\n"
    assert sm.apply(req(1, 1, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(2, 1, "INCR", "n")) == b":2\r\n"
    assert sm.apply(req(0, 0, "GET", "n")) == b"$1\r\n2\r\n"


def test_cached_reply_is_returned_even_if_state_changed() -> None:
    sm = KVStateMachine()
    sm.apply(req(0, 0, "SET", "k", "abc"))
    error = sm.apply(req(3, 1, "INCR", "k"))
    assert error == b"-ERR value is not an integer or out of range\r\n"
    sm.apply(req(0, 0, "SET", "k", "5"))
    assert sm.apply(req(3, 1, "INCR", "k")) == error  # errors are cached too: not re-run
    assert sm.apply(req(0, 0, "GET", "k")) == b"$1\r\n5\r\n"


def test_older_sequence_is_stale() -> None:
    sm = KVStateMachine()
    sm.apply(req(1, 1, "INCR", "n"))
    sm.apply(req(1, 2, "INCR", "n"))
    assert sm.apply(req(1, 1, "INCR", "n")) == STALE
    assert sm.apply(req(1, 2, "INCR", "n")) == b":2\r\n"
    assert sm.apply(req(0, 0, "GET", "n")) == b"$1\r\n2\r\n"


def test_sequence_gaps_are_allowed() -> None:
    sm = KVStateMachine()
    assert sm.apply(req(1, 5, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(1, 9, "INCR", "n")) == b":2\r\n"
    assert sm.apply(req(1, 7, "INCR", "n")) == STALE


def test_non_positive_sequence_with_a_client_id_is_refused() -> None:
    sm = KVStateMachine()
    reply = sm.apply(req(1, 0, "INCR", "n"))
    assert reply.startswith(b"-ERR invalid request sequence")
    assert sm.apply(req(1, -3, "INCR", "n")) == reply
    assert sm.session_count == 0
    assert sm.apply(req(0, 0, "EXISTS", "n")) == b":0\r\n"


def test_client_zero_is_never_deduplicated() -> None:
    sm = KVStateMachine()
    assert sm.apply(req(0, 1, "INCR", "n")) == b":1\r\n"
    assert sm.apply(req(0, 1, "INCR", "n")) == b":2\r\n"
    assert sm.session_count == 0


def test_reads_through_the_log_are_cached_like_writes() -> None:
    sm = KVStateMachine()
    sm.apply(req(0, 0, "SET", "k", "a"))
    assert sm.apply(req(4, 1, "GET", "k")) == b"$1\r\na\r\n"
    sm.apply(req(0, 0, "SET", "k", "b"))
    assert sm.apply(req(4, 1, "GET", "k")) == b"$1\r\na\r\n"


def test_session_expires_after_timeout_entries_of_idleness() -> None:
    timeout = 5
    sm = KVStateMachine(session_timeout=timeout)
    sm.apply(req(1, 1, "INCR", "n"))  # entry 1: session last used at 1
    noop(sm, timeout - 1)  # entries 2..timeout
    # Entry timeout+1 is `timeout` entries after the last use: still remembered.
    assert sm.apply(req(1, 1, "INCR", "n")) == b":1\r\n"  # and this use refreshes it
    noop(sm, timeout)
    assert sm.session_count == 1
    noop(sm, 1)  # now idle for timeout+1 entries: dropped
    assert sm.session_count == 0
    # The documented consequence: a retry this late is executed again.
    assert sm.apply(req(1, 1, "INCR", "n")) == b":2\r\n"


def test_expiry_counts_every_entry_including_malformed_ones() -> None:
    sm = KVStateMachine(session_timeout=2)
    sm.apply(req(1, 1, "INCR", "n"))
    sm.apply(b"garbage")
    sm.apply(b"\xc1")
    assert sm.applied == 3
    sm.apply(b"more garbage")
    assert sm.session_count == 0


def test_least_recently_used_session_is_evicted_beyond_the_limit() -> None:
    sm = KVStateMachine(max_sessions=2)
    sm.apply(req(1, 1, "INCR", "a"))
    sm.apply(req(2, 1, "INCR", "b"))
    sm.apply(req(1, 1, "INCR", "a"))  # a retry is a use: client 2 is now the oldest
    sm.apply(req(3, 1, "INCR", "c"))
    assert sm.session_count == 2
    assert sm.apply(req(1, 1, "INCR", "a")) == b":1\r\n"  # still cached
    assert sm.apply(req(3, 1, "INCR", "c")) == b":1\r\n"  # still cached
    assert sm.apply(req(2, 1, "INCR", "b")) == b":2\r\n"  # evicted: executed again


def test_sessions_survive_snapshot_and_restore() -> None:
    sm = KVStateMachine(session_timeout=10, max_sessions=2)
    sm.apply(req(1, 1, "INCR", "a"))
    sm.apply(req(2, 1, "INCR", "b"))
    sm.apply(req(1, 2, "INCR", "a"))
    copy = KVStateMachine(session_timeout=10, max_sessions=2)
    copy.restore(sm.snapshot())
    assert copy.applied == sm.applied == 3
    for machine in (sm, copy):
        assert machine.apply(req(1, 2, "INCR", "a")) == b":2\r\n"
        assert machine.apply(req(1, 1, "INCR", "a")) == STALE
        # LRU order is part of the snapshot: client 2 is the one evicted on both.
        machine.apply(req(3, 1, "INCR", "c"))
        assert machine.apply(req(2, 1, "INCR", "b")) == b":2\r\n"
    assert copy.digest() == sm.digest()


def test_expiry_positions_survive_snapshot_and_restore() -> None:
    sm = KVStateMachine(session_timeout=3)
    sm.apply(req(1, 1, "INCR", "a"))
    noop(sm, 2)
    copy = KVStateMachine(session_timeout=3)
    copy.restore(sm.snapshot())
    for machine in (sm, copy):
        noop(machine, 1)
        assert machine.session_count == 1
        noop(machine, 1)
        assert machine.session_count == 0


# --- every write command, and transactions, inside a session ----------------------------------

WRITES = [
    ["SET", "k", "v", "EX", "100"], ["SETEX", "k", "100", "v"], ["PSETEX", "k", "100", "v"],
    ["GETEX", "k", "PX", "500"], ["EXPIRE", "k", "50"], ["PEXPIRE", "k", "5000", "GT"],
    ["EXPIREAT", "k", "99999999999"], ["PERSIST", "k"], ["APPEND", "k", "x"],
    ["SETRANGE", "k", "5", "y"], ["INCRBYFLOAT", "f", "0.5"], ["SETBIT", "b", "9", "1"],
    ["BITOP", "OR", "c", "b", "k"], ["RENAME", "k", "k2"], ["RENAMENX", "k2", "k3"],
    ["COPY", "k3", "k4", "DB", "2"], ["MOVE", "k4", "3"], ["SWAPDB", "0", "4"],
    ["FLUSHDB"], ["INCR", "n"], ["EVAL", "return redis.call('incr', KEYS[1])", "1", "n"],
    ["SCRIPT", "LOAD", "return 1"], ["GETDEL", "n"], ["MSETNX", "p", "1", "q", "2"],
]  # fmt: skip


def test_every_write_command_is_applied_once_however_often_it_is_retried() -> None:
    sm = KVStateMachine()
    for seq, argv in enumerate(WRITES, start=1):
        words = [a.encode() for a in argv]
        first = sm.apply(encode_request(words, client_id=9, seq=seq, time=1_700_000_000_000))
        state = [dict(db.data) for db in sm.dbs], [dict(db.expires) for db in sm.dbs]
        for _ in range(2):
            retry = encode_request(words, client_id=9, seq=seq, time=1_700_000_009_000)
            assert sm.apply(retry) == first, argv
        assert ([dict(db.data) for db in sm.dbs], [dict(db.expires) for db in sm.dbs]) == state


def test_a_transaction_is_applied_once_however_often_it_is_retried() -> None:
    sm = KVStateMachine()
    queued = [[b"INCR", b"n"], [b"INCR", b"n"], [b"GET", b"n"]]
    request = encode_request([b"exec"], client_id=4, seq=1, multi=queued)
    assert sm.apply(request) == b"*3\r\n:1\r\n:2\r\n$1\r\n2\r\n"
    assert sm.apply(request) == b"*3\r\n:1\r\n:2\r\n$1\r\n2\r\n"
    assert sm.apply(req(0, 0, "GET", "n")) == b"$1\r\n2\r\n"


def test_watch_registrations_expire_by_log_position_and_then_exec_aborts() -> None:
    sm = KVStateMachine(session_timeout=5)
    sm.apply(encode_request([b"watch", b"k"], watch=77))
    assert 77 in sm.watchers
    noop(sm, 7)  # the connection vanished without UNWATCH
    assert 77 not in sm.watchers and not sm.dbs[0].watched
    exec_ = encode_request([b"exec"], watch=77, multi=[[b"SET", b"k", b"v"]])
    assert sm.apply(exec_) == b"*-1\r\n"  # not known to be clean: aborted, nothing applied
    assert sm.apply(req(0, 0, "EXISTS", "k")) == b":0\r\n"


def test_watch_registrations_survive_snapshots() -> None:
    sm = KVStateMachine()
    sm.apply(encode_request([b"watch", b"k"], watch=5))
    copy = KVStateMachine()
    copy.restore(sm.snapshot())
    for m in (sm, copy):
        m.apply(req(0, 0, "SET", "k", "changed"))
    exec_ = encode_request([b"exec"], watch=5, multi=[[b"SET", b"k", b"mine"]])
    assert sm.apply(exec_) == copy.apply(exec_) == b"*-1\r\n"
    assert sm.digest() == copy.digest()
