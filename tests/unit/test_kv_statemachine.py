"""The KV store as a replicated state machine: determinism, snapshots, digests, reads, and
surviving any bytes a log entry may hold."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxos.core.statemachine import ConcurrentSnapshots, StateMachine
from pyxos.kv import KVStateMachine, Request, decode_request, encode_request, to_resp3
from pyxos.kv.statemachine import FRAME_KEYS
from pyxos.resp.replies import decode_reply


def cmd(*argv: str) -> bytes:
    return encode_request([a.encode() for a in argv])


def test_implements_the_protocol() -> None:
    assert isinstance(KVStateMachine(), StateMachine)
    assert isinstance(KVStateMachine(), ConcurrentSnapshots)


def test_request_round_trip() -> None:
    data = encode_request([b"SET", b"k", b"\x00"], client_id=9, seq=4)
    assert decode_request(data) == Request(9, 4, [b"SET", b"k", b"\x00"])
    assert decode_request(encode_request([b"PING"])) == Request(0, 0, [b"PING"])


# --- snapshots ---------------------------------------------------------------------------------


def test_snapshot_restore_round_trip() -> None:
    sm = KVStateMachine()
    for c in (cmd("MSET", "a", "1", "b", "2"), cmd("INCR", "n"), cmd("DEL", "b")):
        sm.apply(c)
    copy = KVStateMachine()
    copy.apply(cmd("SET", "stale", "gone"))  # restore replaces everything
    copy.restore(sm.snapshot())
    assert copy.snapshot() == sm.snapshot()
    assert copy.digest() == sm.digest()
    assert copy.read([b"MGET", b"a", b"b", b"n", b"stale"]) == (
        b"*4\r\n$1\r\n1\r\n$-1\r\n$1\r\n1\r\n$-1\r\n"
    )
    assert len(copy) == 2
    assert copy.applied == 3


def test_empty_snapshot() -> None:
    sm = KVStateMachine()
    copy = KVStateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()


def test_digest_does_not_depend_on_insertion_order() -> None:
    # Two replicas may hold their keys in different dict orders (one restored from a
    # snapshot, one that applied the log); converged, their digests must be equal.
    a, b = KVStateMachine(), KVStateMachine()
    a.apply(cmd("SET", "x", "1"))
    a.apply(cmd("SET", "y", "2"))
    b.apply(cmd("SET", "y", "2"))
    b.apply(cmd("SET", "x", "1"))
    a._applied = b._applied
    assert a.digest() == b.digest()
    b.apply(cmd("SET", "x", "2"))
    a.apply(cmd("SET", "x", "3"))
    assert a.digest() != b.digest()


def test_big_snapshot_spans_frames_and_round_trips() -> None:
    sm = KVStateMachine()
    n = FRAME_KEYS * 2 + 17
    sm.apply(encode_request([b"MSET", *(x for i in range(n) for x in (b"k%d" % i, b"v%d" % i))]))
    sm.apply(encode_request([b"SET", b"s", b"1"], client_id=5, seq=1))
    pieces = list(sm.snapshot_stream())
    assert len(pieces) == 2 + 3  # magic, header, three frames of keys
    copy = KVStateMachine()
    copy.restore(b"".join(pieces))
    assert len(copy) == n + 1 and copy.digest() == sm.digest()
    # the session came along: a retry gets the cached reply, not a second execution
    assert copy.apply(encode_request([b"SET", b"s", b"2"], client_id=5, seq=1)) == b"+OK\r\n"
    assert copy.read([b"GET", b"s"]) == b"$1\r\n1\r\n"


def test_snapshot_stream_captures_the_state_at_the_call() -> None:
    sm = KVStateMachine()
    sm.apply(cmd("SET", "a", "1"))
    stream = sm.snapshot_stream()  # encoded later, as a worker thread would
    captured = sm.digest()
    sm.apply(cmd("SET", "a", "2"))
    sm.apply(cmd("SET", "b", "3"))
    copy = KVStateMachine()
    copy.restore(b"".join(stream))
    assert copy.digest() == captured != sm.digest()


def test_prepare_restore_leaves_the_live_state_until_the_swap() -> None:
    source = KVStateMachine()
    source.apply(cmd("SET", "a", "new"))
    sm = KVStateMachine()
    sm.apply(cmd("SET", "a", "old"))
    swap = sm.prepare_restore(source.snapshot())
    assert sm.read([b"GET", b"a"]) == b"$3\r\nold\r\n"
    swap()
    assert sm.read([b"GET", b"a"]) == b"$3\r\nnew\r\n"
    assert sm.digest() == source.digest()


def test_version_1_snapshots_still_restore() -> None:
    # What earlier releases wrote: one msgpack array, keys sorted.
    old = msgspec.msgpack.encode([1, 3, [b"a", b"b"], [b"1", b"2"], [[7, 2, 3, b"+OK\r\n"]]])
    sm = KVStateMachine()
    sm.restore(old)
    assert len(sm) == 2 and sm.applied == 3 and sm.session_count == 1
    assert sm.read([b"GET", b"b"]) == b"$1\r\n2\r\n"


def _damaged_snapshots() -> list[bytes]:
    sm = KVStateMachine()
    sm.apply(encode_request([b"MSET", *(x for i in range(10) for x in (b"k%d" % i, b"v"))]))
    good = sm.snapshot()
    header_end = 5 + 4 + int.from_bytes(good[5:9], "big")
    return [
        good[:-3],  # truncated frame
        good[:header_end],  # the keys are missing: the header's count disagrees
        good + good[header_end:],  # the keys twice: duplicates, count disagrees
        good[:4] + b"\x09" + good[5:],  # unknown version
        good[:5],  # no header
        good[:header_end] + b"\x00\x00\x00\x02\x91\x01",  # a frame of the wrong shape
    ]


@pytest.mark.parametrize("data", _damaged_snapshots())
def test_restore_rejects_damaged_frames_and_keeps_state(data: bytes) -> None:
    sm = KVStateMachine()
    sm.apply(cmd("SET", "k", "v"))
    before = sm.digest()
    with pytest.raises(ValueError):
        sm.restore(data)
    assert sm.digest() == before


def test_digest_tracks_state_not_reads() -> None:
    sm = KVStateMachine()
    empty = sm.digest()
    assert len(empty) == 64
    int(empty, 16)
    sm.apply(cmd("SET", "k", "v"))
    after_write = sm.digest()
    assert after_write != empty
    sm.read([b"GET", b"k"])
    sm.read([b"SET", b"k", b"other"])  # refused, so nothing changes
    assert sm.digest() == after_write
    sm.apply(cmd("GET", "k"))  # through the log: the log position is state
    assert sm.digest() != after_write


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        msgspec.msgpack.encode([2, 0, [], [], []]),
        msgspec.msgpack.encode([1, 0, [b"k"], [], []]),
    ],
)
def test_restore_rejects_bad_snapshots_and_keeps_state(data: bytes) -> None:
    sm = KVStateMachine()
    sm.apply(cmd("SET", "k", "v"))
    before = sm.digest()
    with pytest.raises(ValueError):
        sm.restore(data)
    assert sm.digest() == before


# --- reads ---------------------------------------------------------------------------------------


def test_read_serves_reads_without_changing_state() -> None:
    sm = KVStateMachine()
    sm.apply(cmd("SET", "k", "v"))
    applied = sm.applied
    assert sm.read([b"GET", b"k"]) == b"$1\r\nv\r\n"
    assert sm.read([b"get", b"missing"]) == b"$-1\r\n"
    assert sm.read([b"GET", b"missing"], protocol=3) == b"_\r\n"
    assert sm.read([b"MGET", b"k", b"x"], protocol=3) == b"*2\r\n$1\r\nv\r\n_\r\n"
    assert sm.read([b"EXISTS", b"k", b"k"]) == b":2\r\n"
    assert sm.read([b"STRLEN", b"k"]) == b":1\r\n"
    assert sm.read([b"DBSIZE"]) == b":1\r\n"
    assert sm.read([b"TYPE", b"k"]) == b"+string\r\n"
    assert sm.read_value([b"MGET", b"k", b"x"]) == [b"v", None]
    assert sm.applied == applied


def test_read_refuses_writes_and_reports_errors() -> None:
    sm = KVStateMachine()
    assert sm.read([b"INCR", b"n"]) == (
        b"-ERR 'incr' changes the replicated state and must go through the log\r\n"
    )
    assert sm.read([b"GET"]) == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert sm.read([b"INCR"]) == b"-ERR wrong number of arguments for 'incr' command\r\n"
    assert sm.read([b"NOPE"]) == b"-ERR unknown command 'NOPE', with args beginning with: \r\n"
    assert sm.read([b"PING"]).startswith(b"-ERR 'ping' is a connection command")
    assert sm.read([]) == b"-ERR empty command\r\n"
    assert sm.read([b"EXISTS", b"n"]) == b":0\r\n"


def test_write_replies_translate_to_resp3() -> None:
    sm = KVStateMachine()
    assert to_resp3(sm.apply(cmd("SET", "k", "v", "NX", "GET"))) == b"_\r\n"
    assert to_resp3(sm.apply(cmd("SET", "k", "w", "GET"))) == b"$1\r\nv\r\n"
    assert to_resp3(sm.apply(cmd("GETDEL", "nope"))) == b"_\r\n"


# --- malformed log entries -------------------------------------------------------------------

MALFORMED = b"-ERR malformed replicated request\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode([0, 0, ["SET", "k", "v"]]),  # str, not bytes
        msgspec.msgpack.encode([0, 0]),
        msgspec.msgpack.encode({"client_id": 0}),
        msgspec.msgpack.encode([0, 0, [b"GET", b"k"]]) + b"\x00",
        msgspec.msgpack.encode([1.5, 0, [b"GET", b"k"]]),
        msgspec.msgpack.encode([0, 0, [b"GET", b"k"], 7, 0, 0, None, 1]),  # a field too many
        msgspec.msgpack.encode([0, 0, [b"GET", b"k"], 7, 99]),  # no database 99
    ],
)
def test_malformed_entries_get_an_error_reply(data: bytes) -> None:
    sm = KVStateMachine()
    assert sm.apply(data) == MALFORMED
    assert sm.applied == 1


msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(),
        st.binary(max_size=8),
        st.text(max_size=8),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=64), msgpack_values.map(msgspec.msgpack.encode)))
def test_apply_never_raises_and_always_returns_one_reply(data: bytes) -> None:
    a, b = KVStateMachine(), KVStateMachine()
    reply = a.apply(data)
    decode_reply(reply)  # exactly one complete RESP reply
    assert b.apply(data) == reply
    assert a.digest() == b.digest()


# --- determinism -------------------------------------------------------------------------------

KEYS = [b"a", b"b", b"n", b"\x00"]
VALUES = [b"", b"1", b"-1", b"x", b"9223372036854775807", b"-9223372036854775808", b"007"]
NAMES = [
    b"GET", b"SET", b"set", b"SETNX", b"GETSET", b"GETDEL", b"DEL", b"UNLINK", b"INCR", b"INCRBY",
    b"DECR", b"DECRBY", b"MSET", b"MSETNX", b"MGET", b"APPEND", b"CAS", b"EXISTS", b"STRLEN",
    b"DBSIZE", b"TYPE", b"TTL", b"FLUSHDB", b"FLUSHALL", b"PING", b"NOPE",
]  # fmt: skip
OPTIONS = [b"NX", b"XX", b"GET", b"KEEPTTL", b"EX", b"px", b"ASYNC", b"bogus"]

words = st.one_of(st.sampled_from(KEYS), st.sampled_from(VALUES), st.sampled_from(OPTIONS))
argvs = st.tuples(st.sampled_from(NAMES), st.lists(words, max_size=5)).map(lambda t: [t[0], *t[1]])
requests = st.one_of(
    argvs.map(encode_request),
    st.tuples(argvs, st.integers(1, 3), st.integers(-1, 4)).map(
        lambda t: encode_request(t[0], client_id=t[1], seq=t[2])
    ),
    st.binary(max_size=6),  # the odd corrupt entry
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, max_size=40), st.data())
def test_replicas_given_the_same_log_agree(log: list[bytes], data: st.DataObject) -> None:
    config = {"session_timeout": 7, "max_sessions": 2}
    a, b = KVStateMachine(**config), KVStateMachine(**config)
    cut = data.draw(st.integers(0, len(log)), label="snapshot at")
    restored = KVStateMachine(**config)
    for i, entry in enumerate(log):
        if i == cut:
            restored.restore(a.snapshot())
        ra = a.apply(entry)
        assert b.apply(entry) == ra
        if i >= cut:
            assert restored.apply(entry) == ra
        decode_reply(ra)
    if cut == len(log):
        restored.restore(a.snapshot())
    assert a.snapshot() == b.snapshot() == restored.snapshot()
    assert a.digest() == b.digest() == restored.digest()


# A tiny model of the core commands, to check meaning and not only agreement.
key_st = st.sampled_from(KEYS)
value_st = st.sampled_from(VALUES)
model_ops = st.one_of(
    st.tuples(st.just("set"), st.tuples(key_st, value_st)),
    st.tuples(st.just("get"), st.tuples(key_st)),
    st.tuples(st.just("del"), st.tuples(key_st)),
    st.tuples(st.just("incr"), st.tuples(key_st)),
    st.tuples(st.just("cas"), st.tuples(key_st, value_st, value_st)),
    st.tuples(st.just("append"), st.tuples(key_st, value_st)),
)


def _is_redis_integer(value: bytes) -> bool:
    digits = value[1:] if value.startswith(b"-") else value
    return value == b"0" or (digits.isdigit() and not digits.startswith(b"0"))


@settings(max_examples=200)
@given(st.lists(model_ops, max_size=40))
def test_against_a_dict_model(ops: list[tuple[str, tuple[bytes, ...]]]) -> None:
    sm = KVStateMachine()
    model: dict[bytes, bytes] = {}
    for op, args in ops:
        reply = decode_reply(sm.apply(encode_request([op.encode(), *args])))
        key = args[0]
        if op == "set":
            model[key] = args[1]
            assert reply == "OK"
        elif op == "get":
            assert reply == model.get(key)
        elif op == "del":
            assert reply == (1 if model.pop(key, None) is not None else 0)
        elif op == "incr":
            current = model.get(key, b"0")
            if _is_redis_integer(current) and -(2**63) <= int(current) < 2**63 - 1:
                model[key] = b"%d" % (int(current) + 1)
                assert reply == int(current) + 1
            else:
                assert isinstance(reply, str)
                assert reply.startswith("ERR")
        elif op == "cas":
            if model.get(key) == args[1]:
                model[key] = args[2]
                assert reply == 1
            else:
                assert reply == 0
        elif op == "append":
            model[key] = model.get(key, b"") + args[1]
            assert reply == len(model[key])
    assert sm.read_value([b"MGET", *KEYS]) == [model.get(k) for k in KEYS]


def test_version_2_snapshots_still_restore() -> None:
    # What the release before expiry wrote: one database, frames of (key, value) pairs.
    def frame(value: object) -> bytes:
        payload = msgspec.msgpack.encode(value)
        return len(payload).to_bytes(4, "big") + payload

    old = b"PXKV\x02" + frame([5, 2, [[7, 2, 3, b"+OK\r\n"]]]) + frame([[b"a", b"1"], [b"b", b"2"]])
    sm = KVStateMachine()
    sm.restore(old)
    assert len(sm) == 2 and sm.applied == 5 and sm.session_count == 1
    assert sm.read([b"MGET", b"a", b"b"]) == b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    assert sm.now == 0 and not sm.expiring
