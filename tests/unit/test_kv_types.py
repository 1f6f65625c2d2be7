"""The container types in the state machine itself: snapshots of every type round-trip (and a
restored replica has the same digest), a big container spreads over many frames, corrupt
container frames are refused, and random draws are the same on every replica."""

from __future__ import annotations

import pytest

from pyxos.kv import KVStateMachine, encode_request
from pyxos.kv import snapshot as snap


def run(sm: KVStateMachine, *words: str | bytes, db: int = 0) -> bytes:
    argv = [w.encode() if isinstance(w, str) else w for w in words]
    return sm.apply(encode_request(argv, time=1_000, db=db))


def filled() -> KVStateMachine:
    sm = KVStateMachine()
    run(sm, "SET", "s", "v")
    run(sm, "HSET", "h", "f", "1", "g", "2")
    run(sm, "HSET", "h2", "x", "y", db=3)
    run(sm, "EXPIRE", "h", "100")
    assert run(sm, "RPUSH", "l", "a", "b", "c") == b":3\r\n"
    assert run(sm, "SADD", "st", "m", "n", "1") == b":3\r\n"
    assert run(sm, "ZADD", "z", "1.5", "a", "-inf", "b", "2", "c") == b":3\r\n"
    return sm


def replies(sm: KVStateMachine) -> list[bytes]:
    out = []
    for argv in (
        [b"KEYS", b"*"],
        [b"HGETALL", b"h"],
        [b"TTL", b"h"],
        [b"TYPE", b"h"],
        [b"LRANGE", b"l", b"0", b"-1"],
        [b"SMEMBERS", b"st"],
        [b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"],
    ):
        out.append(sm.read(argv))
    out.append(sm.read([b"HGETALL", b"h2"], db=3))
    return out


def test_snapshot_round_trips_every_type_with_the_same_digest() -> None:
    sm = filled()
    copy = KVStateMachine()
    copy.restore(sm.snapshot())
    assert copy.digest() == sm.digest()
    assert replies(copy) == replies(sm)
    assert copy.read([b"HGET", b"h", b"g"]) == b"$1\r\n2\r\n"


def test_a_snapshot_does_not_change_with_later_writes() -> None:
    sm = filled()
    stream = sm.snapshot_stream()
    run(sm, "HSET", "h", "late", "1")
    run(sm, "HDEL", "h", "f")
    copy = KVStateMachine()
    copy.restore(b"".join(stream))
    assert copy.read([b"HGETALL", b"h"]) == b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n"


def test_a_big_container_spreads_over_frames() -> None:
    sm = KVStateMachine()
    n = snap.FRAME_ELEMENTS * 2 + 7
    words = [b"HSET", b"big"]
    for i in range(n):
        words += [b"f%d" % i, b"%d" % i]
    sm.apply(encode_request(words, time=1))
    frames = list(sm.snapshot_stream())
    assert len(frames) > 5  # magic, header, key frame, at least 4 element frames
    copy = KVStateMachine()
    copy.restore(b"".join(frames))
    assert copy.read([b"HLEN", b"big"]) == b":%d\r\n" % n
    assert copy.digest() == sm.digest()


def test_digest_ignores_insertion_order_of_fields() -> None:
    a, b = KVStateMachine(), KVStateMachine()
    run(a, "HSET", "h", "x", "1", "y", "2")
    run(b, "HSET", "h", "y", "2", "x", "1")
    assert a.digest() == b.digest()
    run(b, "HSET", "h", "y", "3")
    assert a.digest() != b.digest()


@pytest.mark.parametrize(
    "corrupt",
    [
        # a container placeholder whose elements never come: an empty container
        lambda: [(0, [(b"h", 1)])],
        # elements for a key that is a string
        lambda: [(0, [(b"h", b"v")]), (32, [(b"h", [b"f", b"v"])])],
        # an odd number of hash elements
        lambda: [(0, [(b"h", 1)]), (32, [(b"h", [b"f"])])],
        # a repeated field
        lambda: [(0, [(b"h", 1)]), (32, [(b"h", [b"f", b"v", b"f", b"w"])])],
        # an unknown type code
        lambda: [(0, [(b"h", 9)])],
    ],
)
def test_corrupt_container_frames_are_refused(corrupt: object) -> None:
    import msgspec

    enc = msgspec.msgpack.Encoder()
    frames = corrupt()  # type: ignore[operator]
    keys = [0] * 16
    keys[0] = 1
    header = (0, 0, [], [], [], keys, [0] * 16)
    data = snap.SNAPSHOT_MAGIC + bytes([snap.SNAPSHOT_VERSION])
    for payload in [header, *frames]:
        body = enc.encode(payload)
        data += len(body).to_bytes(4, "big") + body
    sm = KVStateMachine()
    run(sm, "SET", "keep", "me")
    with pytest.raises(ValueError):
        sm.restore(data)
    assert sm.read([b"GET", b"keep"]) == b"$2\r\nme\r\n"


def test_random_draws_are_the_same_on_every_replica() -> None:
    a, b = filled(), filled()
    b.read([b"HRANDFIELD", b"h", b"-5"])  # a local read on one node only
    for _ in range(5):
        entry = encode_request([b"HRANDFIELD", b"h", b"-3", b"WITHVALUES"], time=1_000)
        assert a.apply(entry) == b.apply(entry)


def test_a_full_scan_of_a_big_container_returns_each_element_once() -> None:
    sm = KVStateMachine()
    members = [b"m%d" % i for i in range(1000)]
    run(sm, "SADD", "s", *members)
    run(sm, "HSET", "h", *[w for m in members for w in (m, b"v")])
    for command, step in ((b"SSCAN", 1), (b"HSCAN", 2)):
        key = b"s" if command == b"SSCAN" else b"h"
        seen: list[bytes] = []
        cursor = b"0"
        calls = 0
        while True:
            reply = sm.read_value([command, key, cursor, b"COUNT", b"10"])
            assert isinstance(reply, list)
            cursor, items = reply
            assert isinstance(items, list)
            seen += items[::step]  # type: ignore[arg-type]
            calls += 1
            if cursor == b"0":
                break
        assert sorted(seen) == sorted(members)
        assert calls > 10  # it did walk in windows


def test_spop_is_the_same_on_every_replica() -> None:
    a, b = KVStateMachine(), KVStateMachine()
    for sm in (a, b):
        run(sm, "SADD", "s", *[b"x%d" % i for i in range(50)])
    b.read([b"SRANDMEMBER", b"s", b"3"])
    for _ in range(6):
        entry = encode_request([b"SPOP", b"s", b"2"], time=1)
        assert a.apply(entry) == b.apply(entry)
    entry = encode_request([b"SPOP", b"s"], time=1)
    assert a.apply(entry) == b.apply(entry)
    assert a.digest() == b.digest()
