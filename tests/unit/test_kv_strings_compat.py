"""The string commands with arithmetic of their own, against a real redis-server on random
inputs: INCRBYFLOAT (Redis adds in x87 long double), LCS (which subsequence and which
ranges Redis reports), bit ranges, substring ranges, OBJECT ENCODING."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_ref import HAVE_REDIS, Conn, reference_redis

from pyxos.kv import KVStateMachine, encode_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed"),
]
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conn]:
    with reference_redis(tmp_path_factory.mktemp("redis")) as path:
        conn = Conn(path)
        yield conn
        conn.close()


def both(redis: Conn, sm: KVStateMachine, *argv: bytes) -> tuple[bytes, bytes]:
    return redis.command(list(argv)), sm.apply(encode_request(list(argv), time=1))


def decimal_text() -> st.SearchStrategy[bytes]:
    digits = st.text("0123456789", min_size=1, max_size=25)
    return st.builds(
        lambda sign, whole, frac, exp: (sign + whole + frac + exp).encode(),
        st.sampled_from(["", "-", "+"]),
        digits,
        st.one_of(st.just(""), digits.map(lambda d: "." + d)),
        st.one_of(st.just(""), st.integers(-40, 40).map(lambda e: f"e{e}")),
    )


@SETTINGS
@given(st.lists(st.one_of(decimal_text(), st.floats(allow_nan=False).map(repr).map(str.encode)),
                min_size=1, max_size=6))  # fmt: skip
def test_incrbyfloat_adds_in_long_double(redis: Conn, increments: list[bytes]) -> None:
    redis.command([b"DEL", b"f"])
    sm = KVStateMachine()
    for incr in increments:
        theirs, ours = both(redis, sm, b"INCRBYFLOAT", b"f", incr)
        assert ours == theirs, incr


@SETTINGS
@given(st.binary(max_size=30), st.binary(max_size=30), st.integers(0, 4), st.data())
def test_lcs_reports_what_redis_reports(
    redis: Conn, a: bytes, b: bytes, min_len: int, data: st.DataObject
) -> None:
    alphabet = data.draw(st.sampled_from([b"ab", b"abc", b"xyz01"]))
    a = bytes(alphabet[c % len(alphabet)] for c in a)
    b = bytes(alphabet[c % len(alphabet)] for c in b)
    sm = KVStateMachine()
    both(redis, sm, b"MSET", b"x", a, b"y", b)
    for options in ([], [b"LEN"], [b"IDX"], [b"IDX", b"WITHMATCHLEN"],
                    [b"IDX", b"MINMATCHLEN", b"%d" % min_len, b"WITHMATCHLEN"]):  # fmt: skip
        theirs, ours = both(redis, sm, b"LCS", b"x", b"y", *options)
        assert ours == theirs, options


indexes = st.integers(-20, 20).map(lambda i: b"%d" % i)


@SETTINGS
@given(st.binary(max_size=6), indexes, indexes, st.sampled_from([[], [b"BIT"], [b"BYTE"]]))
def test_bit_and_byte_ranges(
    redis: Conn, value: bytes, start: bytes, end: bytes, unit: list[bytes]
) -> None:
    sm = KVStateMachine()
    both(redis, sm, b"SET", b"v", value)
    for argv in (
        [b"BITCOUNT", b"v", start, end, *unit],
        [b"BITPOS", b"v", b"1", start, end, *unit],
        [b"BITPOS", b"v", b"0", start, end, *unit],
        [b"BITPOS", b"v", b"0", start],
        [b"BITPOS", b"v", b"1"],
        [b"BITPOS", b"v", b"0"],
        [b"GETRANGE", b"v", start, end],
        [b"GETBIT", b"v", start.lstrip(b"-")],
    ):
        theirs, ours = both(redis, sm, *argv)
        assert ours == theirs, argv


@SETTINGS
@given(st.binary(max_size=4), st.integers(0, 12), st.binary(max_size=4), st.integers(0, 40))
def test_setrange_and_setbit_grow_strings_alike(
    redis: Conn, value: bytes, offset: int, patch: bytes, bit_offset: int
) -> None:
    sm = KVStateMachine()
    both(redis, sm, b"SET", b"v", value)
    for argv in (
        [b"SETRANGE", b"v", b"%d" % offset, patch],
        [b"SETBIT", b"v", b"%d" % bit_offset, b"1"],
        [b"SETBIT", b"v", b"%d" % (bit_offset // 2), b"0"],
        [b"GET", b"v"],
        [b"SETRANGE", b"w", b"%d" % offset, patch],
        [b"GET", b"w"],
        [b"BITOP", b"XOR", b"d", b"v", b"w"],
        [b"GET", b"d"],
        [b"DEL", b"w"],
    ):
        theirs, ours = both(redis, sm, *argv)
        assert ours == theirs, argv


@pytest.mark.parametrize(
    "value",
    [b"0", b"1", b"123", b"9999", b"10000", b"-1", b"007", b"9223372036854775807",
     b"9223372036854775808", b"x" * 44, b"x" * 45, b"", b"1.5", b"-0"],
)  # fmt: skip
def test_object_encoding_and_refcount_of_set_values(redis: Conn, value: bytes) -> None:
    sm = KVStateMachine()
    both(redis, sm, b"SET", b"v", value)
    for sub in (b"ENCODING", b"REFCOUNT"):
        theirs, ours = both(redis, sm, b"OBJECT", sub, b"v")
        assert ours == theirs, sub


@pytest.mark.parametrize(
    "argv",
    [
        [b"SETRANGE", b"v", b"536870912", b"x"],
        [b"SETRANGE", b"v", b"536870911", b"xy"],
        [b"SETRANGE", b"v", b"-1", b"x"],
        [b"SETRANGE", b"v", b"x", b"x"],
        [b"SETBIT", b"v", b"4294967296", b"1"],
        [b"SETBIT", b"v", b"-1", b"1"],
        [b"GETBIT", b"v", b"4294967296"],
        [b"INCRBYFLOAT", b"v", b"1" * 5200],
        [b"STRLEN", b"v"],
    ],
)
def test_size_limits_as_in_redis(redis: Conn, argv: list[bytes]) -> None:
    sm = KVStateMachine()
    both(redis, sm, b"SET", b"v", b"abc")
    theirs, ours = both(redis, sm, *argv)
    assert ours == theirs
