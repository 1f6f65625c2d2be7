"""Every KV command's replies and errors, byte for byte as Redis 7 sends them.

The expected bytes were cross-checked against a real redis-server 7.0.15 (same commands, raw
socket); ``test_kv_redis_compat.py`` repeats that check automatically when redis-server is
installed. Where pyxos deliberately differs (CAS) the test says so.
"""

from __future__ import annotations

import pytest

from pyxos.kv import (
    COMMANDS,
    CommandKind,
    KVStateMachine,
    classify,
    encode_request,
    lookup,
    string2ll,
    unknown_command_error,
)

LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)


def run(sm: KVStateMachine, *argv: bytes | str) -> bytes:
    words = [a.encode() if isinstance(a, str) else a for a in argv]
    return sm.apply(encode_request(words))


@pytest.fixture
def sm() -> KVStateMachine:
    return KVStateMachine()


def arity(name: str) -> bytes:
    return b"-ERR wrong number of arguments for '" + name.encode() + b"' command\r\n"


SYNTAX = b"-ERR syntax error\r\n"
NOT_INT = b"-ERR value is not an integer or out of range\r\n"
OVERFLOW = b"-ERR increment or decrement would overflow\r\n"
NULL = b"$-1\r\n"
OK = b"+OK\r\n"


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


# --- GET / SET -------------------------------------------------------------------------------


def test_get_set(sm: KVStateMachine) -> None:
    assert run(sm, "GET", "k") == NULL
    assert run(sm, "SET", "k", "v") == OK
    assert run(sm, "GET", "k") == b"$1\r\nv\r\n"
    assert run(sm, "set", "k", b"") == OK
    assert run(sm, "get", "k") == b"$0\r\n\r\n"
    assert run(sm, "SET", b"\x00k\r\n", b"\xff\r\n") == OK
    assert run(sm, "GET", b"\x00k\r\n") == b"$3\r\n\xff\r\n\r\n"


def test_command_names_are_case_insensitive(sm: KVStateMachine) -> None:
    assert run(sm, "sEt", "k", "v") == OK
    assert run(sm, "GeT", "k") == bulk(b"v")


@pytest.mark.parametrize(
    ("options", "exists", "reply", "stored"),
    [
        (["NX"], False, OK, b"new"),
        (["NX"], True, NULL, b"old"),
        (["XX"], False, NULL, None),
        (["XX"], True, OK, b"new"),
        (["nx", "NX"], False, OK, b"new"),  # repeating an option is fine in Redis
        (["GET"], False, NULL, b"new"),
        (["GET"], True, bulk(b"old"), b"new"),
        (["NX", "GET"], False, NULL, b"new"),
        (["NX", "GET"], True, bulk(b"old"), b"old"),  # not set, but GET still answers
        (["XX", "GET"], False, NULL, None),
        (["GET", "XX"], True, bulk(b"old"), b"new"),
        (["KEEPTTL"], True, OK, b"new"),
        (["KEEPTTL", "GET", "XX"], True, bulk(b"old"), b"new"),
        (["NX", "XX"], True, SYNTAX, b"old"),
        (["XX", "NX"], False, SYNTAX, None),
        (["BOGUS"], True, SYNTAX, b"old"),
        (["EX"], True, SYNTAX, b"old"),  # EX without its argument
        (["KEEPTTL", "EX", "10"], True, SYNTAX, b"old"),
        (["EX", "10", "PX", "10"], True, SYNTAX, b"old"),
        (["NX", "NXX"], False, SYNTAX, None),
    ],
)
def test_set_options(
    sm: KVStateMachine, options: list[str], exists: bool, reply: bytes, stored: bytes | None
) -> None:
    if exists:
        run(sm, "SET", "k", "old")
    assert run(sm, "SET", "k", "new", *options) == reply
    assert run(sm, "GET", "k") == (NULL if stored is None else bulk(stored))


@pytest.mark.parametrize("option", ["EX", "px", "EXAT", "pxat"])
def test_set_with_expiry_sets_a_ttl(sm: KVStateMachine, option: str) -> None:
    assert run(sm, "SET", "k", "v", option, "100") == OK
    assert run(sm, "TTL", "k") not in (b":-1\r\n", b":-2\r\n")


def test_set_get_arity(sm: KVStateMachine) -> None:
    assert run(sm, "SET", "k") == arity("set")
    assert run(sm, "SET") == arity("set")
    assert run(sm, "GET") == arity("get")
    assert run(sm, "GET", "a", "b") == arity("get")


def test_setnx_getset_getdel(sm: KVStateMachine) -> None:
    assert run(sm, "SETNX", "k", "1") == b":1\r\n"
    assert run(sm, "SETNX", "k", "2") == b":0\r\n"
    assert run(sm, "GETSET", "k", "3") == bulk(b"1")
    assert run(sm, "GETSET", "new", "x") == NULL
    assert run(sm, "GETDEL", "k") == bulk(b"3")
    assert run(sm, "GETDEL", "k") == NULL
    assert run(sm, "SETNX", "k") == arity("setnx")
    assert run(sm, "GETSET", "k") == arity("getset")
    assert run(sm, "GETDEL") == arity("getdel")


# --- DEL / EXISTS / DBSIZE / FLUSH -----------------------------------------------------------


def test_del_counts_deleted_keys_once(sm: KVStateMachine) -> None:
    run(sm, "MSET", "a", "1", "b", "2")
    assert run(sm, "DEL", "a", "a", "b", "missing") == b":2\r\n"
    assert run(sm, "DEL", "a") == b":0\r\n"
    assert run(sm, "DEL") == arity("del")
    run(sm, "SET", "c", "")
    assert run(sm, "UNLINK", "c") == b":1\r\n"  # an empty value is still a key


def test_exists_counts_repeats(sm: KVStateMachine) -> None:
    run(sm, "SET", "a", "1")
    assert run(sm, "EXISTS", "a", "a", "b") == b":2\r\n"
    assert run(sm, "EXISTS", "b") == b":0\r\n"
    assert run(sm, "EXISTS") == arity("exists")


def test_dbsize_and_flush(sm: KVStateMachine) -> None:
    assert run(sm, "DBSIZE") == b":0\r\n"
    run(sm, "MSET", "a", "1", "b", "2")
    assert run(sm, "DBSIZE") == b":2\r\n"
    assert run(sm, "DBSIZE", "x") == arity("dbsize")
    assert run(sm, "FLUSHDB", "x") == SYNTAX
    assert run(sm, "FLUSHDB", "ASYNC", "x") == SYNTAX
    assert run(sm, "DBSIZE") == b":2\r\n"
    assert run(sm, "FLUSHDB", "sync") == OK
    assert run(sm, "DBSIZE") == b":0\r\n"
    run(sm, "SET", "a", "1")
    assert run(sm, "FLUSHALL") == OK
    assert run(sm, "GET", "a") == NULL
    assert run(sm, "FLUSHALL", "Async") == OK


# --- counters ----------------------------------------------------------------------------------


def test_incr_decr(sm: KVStateMachine) -> None:
    assert run(sm, "INCR", "n") == b":1\r\n"
    assert run(sm, "INCRBY", "n", "10") == b":11\r\n"
    assert run(sm, "DECR", "n") == b":10\r\n"
    assert run(sm, "DECRBY", "n", "15") == b":-5\r\n"
    assert run(sm, "INCRBY", "n", "-5") == b":-10\r\n"
    assert run(sm, "GET", "n") == bulk(b"-10")
    assert run(sm, "DECR", "fresh") == b":-1\r\n"


@pytest.mark.parametrize(
    "stored",
    [b"abc", b"", b"007", b"-0", b"+1", b" 1", b"1 ", b"1.5", b"1e3", b"9223372036854775808"],
)
def test_incr_on_a_non_integer_value(sm: KVStateMachine, stored: bytes) -> None:
    run(sm, "SET", "k", stored)
    assert run(sm, "INCR", "k") == NOT_INT
    assert run(sm, "GET", "k") == bulk(stored)


@pytest.mark.parametrize(
    "increment", ["x", "", "01", "+1", " 1", "1.0", "9223372036854775808", "-9223372036854775809"]
)
def test_incrby_with_a_non_integer_increment(sm: KVStateMachine, increment: str) -> None:
    assert run(sm, "INCRBY", "k", increment) == NOT_INT
    assert run(sm, "DECRBY", "k", increment) == NOT_INT
    assert run(sm, "EXISTS", "k") == b":0\r\n"


def test_incr_overflow(sm: KVStateMachine) -> None:
    run(sm, "SET", "max", str(LLONG_MAX))
    assert run(sm, "INCR", "max") == OVERFLOW
    assert run(sm, "INCRBY", "max", "0") == b":9223372036854775807\r\n"
    run(sm, "SET", "min", str(LLONG_MIN))
    assert run(sm, "DECR", "min") == OVERFLOW
    assert run(sm, "INCRBY", "min", "-1") == OVERFLOW
    assert run(sm, "INCRBY", "min", str(LLONG_MAX)) == b":-1\r\n"
    assert run(sm, "GET", "max") == bulk(str(LLONG_MAX).encode())


def test_decrby_of_llong_min_is_its_own_error(sm: KVStateMachine) -> None:
    assert run(sm, "DECRBY", "k", str(LLONG_MIN)) == b"-ERR decrement would overflow\r\n"


def test_counter_arity(sm: KVStateMachine) -> None:
    assert run(sm, "INCR") == arity("incr")
    assert run(sm, "INCR", "a", "b") == arity("incr")
    assert run(sm, "DECR") == arity("decr")
    assert run(sm, "INCRBY", "a") == arity("incrby")
    assert run(sm, "DECRBY", "a", "1", "2") == arity("decrby")


# --- multi-key ---------------------------------------------------------------------------------


def test_mget_mset(sm: KVStateMachine) -> None:
    assert run(sm, "MSET", "a", "1", "b", "2", "a", "3") == OK  # last write wins
    assert run(sm, "MGET", "a", "missing", "b") == b"*3\r\n$1\r\n3\r\n$-1\r\n$1\r\n2\r\n"
    assert run(sm, "MGET") == arity("mget")
    assert run(sm, "MSET") == arity("mset")
    assert run(sm, "MSET", "a") == arity("mset")
    assert run(sm, "MSET", "a", "1", "b") == arity("mset")


def test_msetnx(sm: KVStateMachine) -> None:
    assert run(sm, "MSETNX", "a", "1", "b", "2") == b":1\r\n"
    assert run(sm, "MSETNX", "c", "3", "a", "9") == b":0\r\n"
    assert run(sm, "MGET", "a", "c") == b"*2\r\n$1\r\n1\r\n$-1\r\n"
    assert run(sm, "MSETNX", "c", "3", "d") == arity("msetnx")


# --- strings -----------------------------------------------------------------------------------


def test_append_strlen(sm: KVStateMachine) -> None:
    assert run(sm, "APPEND", "s", "ab") == b":2\r\n"
    assert run(sm, "APPEND", "s", "cde") == b":5\r\n"
    assert run(sm, "GET", "s") == bulk(b"abcde")
    assert run(sm, "STRLEN", "s") == b":5\r\n"
    assert run(sm, "STRLEN", "missing") == b":0\r\n"
    assert run(sm, "APPEND", "s") == arity("append")
    assert run(sm, "STRLEN") == arity("strlen")


def test_append_respects_the_value_limit() -> None:
    sm = KVStateMachine(max_value_len=4)
    assert run(sm, "APPEND", "s", "abc") == b":3\r\n"
    assert run(sm, "APPEND", "s", "de") == (
        b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    )
    assert run(sm, "GET", "s") == bulk(b"abc")


def test_type_ttl_pttl(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "v")
    assert run(sm, "TYPE", "k") == b"+string\r\n"
    assert run(sm, "TYPE", "missing") == b"+none\r\n"
    assert run(sm, "TTL", "k") == b":-1\r\n"
    assert run(sm, "TTL", "missing") == b":-2\r\n"
    assert run(sm, "PTTL", "k") == b":-1\r\n"
    assert run(sm, "PTTL", "missing") == b":-2\r\n"


# --- CAS (pyxos) -------------------------------------------------------------------------------


def test_cas(sm: KVStateMachine) -> None:
    run(sm, "SET", "k", "1")
    assert run(sm, "CAS", "k", "1", "2") == b":1\r\n"
    assert run(sm, "GET", "k") == bulk(b"2")
    assert run(sm, "CAS", "k", "1", "3") == b":0\r\n"
    assert run(sm, "GET", "k") == bulk(b"2")
    assert run(sm, "CAS", "missing", "", "x") == b":0\r\n"  # a missing key never matches
    assert run(sm, "EXISTS", "missing") == b":0\r\n"
    assert run(sm, "CAS", "k", "2") == arity("cas")
    assert run(sm, "CAS", "k", "2", "3", "4") == arity("cas")


# --- unknown and connection commands -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "reply"),
    [
        ([b"foo"], b"-ERR unknown command 'foo', with args beginning with: \r\n"),
        (
            [b"FOO", b"a", b"b"],
            b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            [b"foo\r\nbar", b"\n"],
            b"-ERR unknown command 'foo  bar', with args beginning with: ' ' \r\n",
        ),
        (
            [b"foo", b"a\x00b", b"c"],
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'c' \r\n",
        ),
        ([b"f\x00oo", b"a"], b"-ERR unknown command 'f', with args beginning with: 'a' \r\n"),
        ([b""], b"-ERR unknown command '', with args beginning with: \r\n"),
        (
            [b"foo", b"x" * 200],
            b"-ERR unknown command 'foo', with args beginning with: '" + b"x" * 128 + b"' \r\n",
        ),
        (
            [b"foo", b"x" * 126, b"y"],  # the first argument alone passes the 128-byte budget
            b"-ERR unknown command 'foo', with args beginning with: '" + b"x" * 126 + b"' \r\n",
        ),
        (
            [b"foo"] + [b"abcdefghij"] * 20,  # ten arguments of 13 bytes make 130 >= 128
            b"-ERR unknown command 'foo', with args beginning with: "
            + b"'abcdefghij' " * 10
            + b"\r\n",
        ),
        (
            [b"z" * 200],
            b"-ERR unknown command '" + b"z" * 128 + b"', with args beginning with: \r\n",
        ),
        (
            [b"\xc3\xa9t\xe9", b"\xff"],
            b"-ERR unknown command '\xc3\xa9t\xe9', with args beginning with: '\xff' \r\n",
        ),
    ],
)
def test_unknown_command_format(sm: KVStateMachine, argv: list[bytes], reply: bytes) -> None:
    assert sm.apply(encode_request(argv)) == reply
    assert classify(argv).error == reply


def test_unknown_command_error_value() -> None:
    assert (
        unknown_command_error([b"x", b"y"])
        == "ERR unknown command 'x', with args beginning with: 'y' "
    )


def test_connection_commands_are_refused_by_the_state_machine(sm: KVStateMachine) -> None:
    assert run(sm, "PING") == (
        b"-ERR 'ping' is a connection command and cannot be applied to the replicated state\r\n"
    )


def test_empty_argv(sm: KVStateMachine) -> None:
    assert sm.apply(encode_request([])) == b"-ERR empty command\r\n"


# --- classification and the command table --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        ([b"SET", b"k", b"v"], CommandKind.WRITE),
        ([b"set", b"k", b"v", b"NX"], CommandKind.WRITE),
        ([b"INCR", b"k"], CommandKind.WRITE),
        ([b"DEL", b"a", b"b"], CommandKind.WRITE),
        ([b"CAS", b"k", b"a", b"b"], CommandKind.WRITE),
        ([b"FLUSHALL"], CommandKind.WRITE),
        ([b"GET", b"k"], CommandKind.READ),
        ([b"MGET", b"a", b"b"], CommandKind.READ),
        ([b"EXISTS", b"a"], CommandKind.READ),
        ([b"DBSIZE"], CommandKind.READ),
        ([b"PING"], CommandKind.LOCAL),
        ([b"ping", b"hi"], CommandKind.LOCAL),
        ([b"ECHO", b"x"], CommandKind.LOCAL),
        ([b"HELLO", b"3"], CommandKind.LOCAL),
        ([b"AUTH", b"pw"], CommandKind.LOCAL),
        ([b"SELECT", b"0"], CommandKind.LOCAL),
        ([b"CLIENT", b"SETNAME", b"x"], CommandKind.LOCAL),
        ([b"COMMAND"], CommandKind.LOCAL),
        ([b"INFO", b"paxos"], CommandKind.LOCAL),
        ([b"QUIT"], CommandKind.LOCAL),
    ],
)
def test_classify_kinds(argv: list[bytes], kind: CommandKind) -> None:
    result = classify(argv)
    assert result.kind is kind
    assert result.error is None
    assert result.spec is not None


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        ([b"GET"], "get"),
        ([b"set", b"k"], "set"),
        ([b"MSET", b"a", b"1", b"b"], "mset"),
        ([b"ECHO"], "echo"),
        ([b"ECHO", b"a", b"b"], "echo"),
        ([b"SELECT"], "select"),
        ([b"AUTH"], "auth"),
        ([b"RESET", b"x"], "reset"),
    ],
)
def test_classify_rejects_bad_arity(argv: list[bytes], name: str) -> None:
    result = classify(argv)
    assert result.kind is CommandKind.INVALID
    assert result.error == arity(name)


def test_classify_unknown_and_empty() -> None:
    assert classify([b"NOPE", b"x"]) == (
        CommandKind.INVALID,
        None,
        b"-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n",
    )
    assert classify([]).kind is CommandKind.INVALID
    assert classify([]).error == b"-ERR empty command\r\n"


def test_classify_agrees_with_apply_on_arity(sm: KVStateMachine) -> None:
    # Every table entry: one word too few and one too many (when fixed) give the same
    # error through classify() as through the log.
    for name, spec in COMMANDS.items():
        if spec.kind is CommandKind.LOCAL:
            continue
        need = abs(spec.arity)
        if need >= 2:
            short = [name] + [b"x"] * (need - 2)
            assert classify(short).error == sm.apply(encode_request(short)) == arity(spec.name)
        if spec.arity > 0:
            long = [name] + [b"x"] * spec.arity
            assert classify(long).error == sm.apply(encode_request(long)) == arity(spec.name)


def test_spec_keys() -> None:
    mset = lookup(b"MSET")
    assert mset is not None
    assert mset.keys([b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    get = lookup(b"get")
    assert get is not None
    assert get.keys([b"GET", b"k"]) == [b"k"]
    dbsize = lookup(b"dbsize")
    assert dbsize is not None
    assert dbsize.keys([b"DBSIZE"]) == []
    assert lookup(b"nope") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"9223372036854775807", LLONG_MAX),
        (b"-9223372036854775808", LLONG_MIN),
        (b"9223372036854775808", None),
        (b"-9223372036854775809", None),
        (b"00", None),
        (b"-0", None),
        (b"-", None),
        (b"", None),
        (b"+1", None),
        (b" 1", None),
        (b"1_000", None),
        (b"\xd9\xa1", None),  # Arabic-Indic digit one: not ASCII
        (b"1" * 21, None),
    ],
)
def test_string2ll_is_as_strict_as_redis(text: bytes, value: int | None) -> None:
    assert string2ll(text) == value
