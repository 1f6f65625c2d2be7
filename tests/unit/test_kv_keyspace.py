"""Keyspace commands: SCAN's guarantee under concurrent change, glob patterns against a real
Redis, RANDOMKEY's determinism, databases, OBJECT and MEMORY."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_ref import HAVE_REDIS, Conn, reference_redis

from pyxos.kv import KVStateMachine, encode_request
from pyxos.kv.glob import compile_pattern
from pyxos.kv.scan import ScanIndex
from pyxos.resp.replies import decode_reply


def run(sm: KVStateMachine, *argv: bytes | str, db: int = 0) -> object:
    words = [a.encode() if isinstance(a, str) else a for a in argv]
    return decode_reply(sm.apply(encode_request(words, db=db)))


def scan_all(
    sm: KVStateMachine, count: int = 10, between: object = None, local: bool = False
) -> list[bytes]:
    seen: list[bytes] = []
    cursor = b"0"
    while True:
        argv = [b"SCAN", cursor, b"COUNT", str(count).encode()]
        reply = decode_reply(sm.read(argv)) if local else run(sm, *argv)
        assert isinstance(reply, list)
        cursor, keys = reply  # type: ignore[assignment]
        assert isinstance(keys, list)
        seen += keys  # type: ignore[arg-type]
        if callable(between):
            between()
        if cursor == b"0":
            return seen


def test_scan_returns_every_key_once_when_nothing_changes() -> None:
    sm = KVStateMachine()
    keys = [b"k%d" % i for i in range(2500)]
    for i in range(0, len(keys), 500):
        run(sm, "MSET", *(x for k in keys[i : i + 500] for x in (k, b"v")))
    for count in (1, 7, 100, 5000):
        seen = scan_all(sm, count)
        assert sorted(seen) == sorted(keys)


@settings(max_examples=150, deadline=None)
@given(
    st.sets(st.binary(max_size=4), max_size=60),
    st.lists(st.tuples(st.booleans(), st.binary(max_size=4)), max_size=80),
    st.integers(1, 12),
)
def test_a_full_scan_returns_every_key_present_throughout(
    initial: set[bytes], changes: list[tuple[bool, bytes]], count: int
) -> None:
    sm = KVStateMachine()
    for key in initial:
        run(sm, "SET", key, "v")
    touched: set[bytes] = set()
    pending = iter(changes)

    def change() -> None:
        for add, key in [next(pending, (True, None)) for _ in range(3)]:  # type: ignore[list-item]
            if key is None:
                return
            touched.add(key)
            run(sm, "SET" if add else "DEL", *([key, "v"] if add else [key]))

    seen = scan_all(sm, count, change)
    throughout = initial - touched
    assert throughout <= set(seen)
    assert len(seen) == len(set(seen))  # no key twice here: none was re-added


def test_scan_options_and_errors() -> None:
    sm = KVStateMachine()
    run(sm, "MSET", "apple", "1", "avocado", "2", "banana", "3")
    reply = run(sm, "SCAN", "0", "MATCH", "a*", "COUNT", "100")
    assert isinstance(reply, list) and sorted(reply[1]) == [b"apple", b"avocado"]  # type: ignore[type-var]
    assert run(sm, "SCAN", "0", "TYPE", "hash") == [b"0", []]
    assert run(sm, "SCAN", "0", "COUNT", "0") == "ERR syntax error"
    assert run(sm, "SCAN", "x") == "ERR invalid cursor"
    assert run(sm, "SCAN", "0", "bogus") == "ERR syntax error"


def test_scan_index_is_a_cache_not_state() -> None:
    sm = KVStateMachine()
    for i in range(50):
        run(sm, "SET", b"k%d" % i, "v")
    before = sm.digest()
    first = scan_all(sm, 5, local=True)
    assert sm.dbs[0].scan is not None
    assert sm.digest() == before
    copy = KVStateMachine()
    copy.restore(sm.snapshot())
    assert copy.dbs[0].scan is None
    assert scan_all(copy, 5, local=True) == first  # the same order, cursor for cursor


def test_scan_window_never_splits_a_hash() -> None:
    index = ScanIndex({b"a": b""})
    index.hashes, index.keys = [5, 5, 5, 9], [b"w", b"x", b"y", b"z"]
    cursor, keys = index.window(0, 1)
    assert (cursor, sorted(keys)) == (6, [b"w", b"x", b"y"])
    assert index.window(cursor, 1) == (0, [b"z"])


def test_randomkey_is_the_same_on_every_replica() -> None:
    replicas = [KVStateMachine(), KVStateMachine()]
    for sm in replicas:
        for i in range(30):
            run(sm, "SET", b"k%d" % i, "v")
    script = [[b"MULTI"]]  # RANDOMKEY inside EXEC is applied on every replica
    assert script
    picks = [sm.apply(encode_request([b"exec"], multi=[[b"RANDOMKEY"]] * 5)) for sm in replicas]
    assert picks[0] == picks[1]
    assert len(set(decode_reply(picks[0]))) > 1  # type: ignore[arg-type]
    assert run(KVStateMachine(), "RANDOMKEY") is None


def test_databases_are_separate_and_flushdb_empties_one() -> None:
    sm = KVStateMachine()
    run(sm, "SET", "k", "zero")
    run(sm, "SET", "k", "one", db=1)
    assert run(sm, "GET", "k") == b"zero"
    assert run(sm, "GET", "k", db=1) == b"one"
    assert run(sm, "FLUSHDB", db=1) == "OK"
    assert run(sm, "DBSIZE", db=1) == 0 and run(sm, "DBSIZE") == 1
    assert (
        sm.apply(encode_request([b"GET", b"k"], db=16)) == b"-ERR malformed replicated request\r\n"
    )
    assert sm.keyspace_info() == [(0, 1, 0, 0)]


def test_object_and_memory_usage() -> None:
    sm = KVStateMachine()
    run(sm, "MSET", "i", "123", "big", "12345", "s", "hello", "r", "x" * 45)
    assert [run(sm, "OBJECT", "ENCODING", k) for k in ("i", "s", "r")] == [
        b"int",
        b"embstr",
        b"raw",
    ]
    assert run(sm, "OBJECT", "REFCOUNT", "i") == 2147483647  # a shared small integer
    assert run(sm, "OBJECT", "REFCOUNT", "big") == 1
    assert run(sm, "OBJECT", "IDLETIME", "s") == 0
    assert run(sm, "OBJECT", "ENCODING", "missing") is None
    small, large = run(sm, "MEMORY", "USAGE", "s"), run(sm, "MEMORY", "USAGE", "r")
    assert isinstance(small, int) and isinstance(large, int) and 0 < small < large
    assert run(sm, "MEMORY", "USAGE", "missing") is None


# --- glob patterns against a real Redis ---------------------------------------------------------


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conn]:
    with reference_redis(tmp_path_factory.mktemp("redis")) as path:
        conn = Conn(path)
        yield conn
        conn.close()


GLOB_KEYS = [b"", b"a", b"b", b"ab", b"ba", b"a-b", b"]", b"\\", b"^", b"abc", b"aXc", b"[a]", b"*"]


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed")
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet="ab*?[]^-\\Xc", max_size=7))
def test_glob_patterns_match_as_in_redis(redis: Conn, pattern: str) -> None:
    redis.command([b"FLUSHALL"])
    redis.command([b"MSET", *(x for k in GLOB_KEYS for x in (k, b"v"))])
    theirs = decode_reply(redis.command([b"KEYS", pattern.encode()]))
    match = compile_pattern(pattern.encode())
    ours = [k for k in GLOB_KEYS if match(k) or pattern == "*"]
    assert isinstance(theirs, list)
    assert sorted(ours) == sorted(theirs)  # type: ignore[type-var]


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed")
@pytest.mark.parametrize(
    "argv",
    [
        ["SCAN", "x"], ["SCAN", "-1"], ["SCAN", "+0"], ["SCAN", " 0"], ["SCAN", "0 "],
        ["SCAN", "18446744073709551616"], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "COUNT", "x"],
        ["SCAN", "0", "MATCH"], ["SCAN", "0", "TYPE", "string", "COUNT", "-1"],
        ["SCAN", "0", "TYPE", "nosuchtype"], ["SCAN", "99999999999999999", "COUNT", "10"],
        ["SCAN", ""],
    ],
)  # fmt: skip
def test_scan_errors_as_in_redis(redis: Conn, argv: list[str]) -> None:
    redis.command([b"FLUSHALL"])
    words = [a.encode() for a in argv]
    ours = KVStateMachine().apply(encode_request(words))
    assert ours == redis.command(words)
