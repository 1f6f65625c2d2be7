"""Lua scripts: Redis's replies and errors (against a real redis-server), determinism across
replicas, the sandbox, and the limits that end a runaway script."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_ref import HAVE_REDIS, Conn, reference_redis
from test_kv_redis_compat import normalized, ours

from pyxos.kv import KVStateMachine, encode_request
from pyxos.resp.replies import decode_reply

T0 = 1_700_000_000_000


def run(sm: KVStateMachine, *argv: str | bytes, time: int = T0) -> bytes:
    words = [a.encode() if isinstance(a, str) else a for a in argv]
    return sm.apply(encode_request(words, time=time))


def ev(sm: KVStateMachine, script: str, *args: str) -> object:
    return decode_reply(run(sm, "EVAL", script, str(len(args) and args[0]), *args[1:]))


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conn]:
    with reference_redis(tmp_path_factory.mktemp("redis")) as path:
        conn = Conn(path)
        yield conn
        conn.close()


@pytest.fixture(scope="module")
def redis3(redis: Conn) -> Iterator[Conn]:
    conn = Conn(redis.address, protocol=3)
    yield conn
    conn.close()


CASES = [
    ["EVAL", "return redis.call('set', KEYS[1], ARGV[1])", "1", "k", "v"],
    ["EVAL", "return redis.call('get', KEYS[1])", "1", "k"],
    ["EVAL", "return {1, 2, {3, 'x'}, nil, 4}", "0"],
    ["EVAL", "return {1, false, 3}", "0"],
    ["EVAL", "return 3.99", "0"],
    ["EVAL", "return -3.99", "0"],
    ["EVAL", "return 1e30", "0"],
    ["EVAL", "return 0/0", "0"],
    ["EVAL", "return true", "0"],
    ["EVAL", "return false", "0"],
    ["EVAL", "return nil", "0"],
    ["EVAL", "return {err='My Error'}", "0"],
    ["EVAL", "return {ok='FINE'}", "0"],
    ["EVAL", "return {ok=1}", "0"],
    ["EVAL", "return redis.error_reply('My Error')", "0"],
    ["EVAL", "return redis.error_reply('x')", "0"],
    ["EVAL", "return redis.error_reply('-WRONGTYPE boom')", "0"],
    ["EVAL", "return {redis.error_reply('x'), 1}", "0"],
    ["EVAL", "return redis.status_reply('FINE')", "0"],
    ["EVAL", "return redis.status_reply('')", "0"],
    ["EVAL", "return x", "0"],
    ["EVAL", "x = 1", "0"],
    ["EVAL", "local t = _G return t.nope", "0"],
    ["EVAL", "return redis.call('nosuch')", "0"],
    ["EVAL", "return redis.call('get')", "0"],
    ["EVAL", "return redis.call()", "0"],
    ["EVAL", "return redis.call({})", "0"],
    ["EVAL", "return redis.call('get', {})", "0"],
    ["EVAL", "return redis.call('eval', 'return 1', '0')", "0"],
    ["EVAL", "return redis.call('multi')", "0"],
    ["EVAL", "return redis.call('client', 'id')", "0"],
    ["EVAL", "redis.call('set', 'k', 'x') return redis.call('incr', 'k')", "0"],
    ["EVAL", "redis.call('set', 'k', 'x') return redis.pcall('incr', 'k')", "0"],
    ["EVAL", "\n\nlocal a = 1\nreturn redis.call('incr', 'k')", "0"],
    ["EVAL", "error('boom')", "0"],
    ["EVAL", "error({err='custom'})", "0"],
    ["EVAL", "local ok, e = pcall(redis.call, 'incr', 'k') return e", "0"],
    ["EVAL", "syntax error here", "0"],
    ["EVAL", "return redis.sha1hex('')", "0"],
    ["EVAL", "return redis.sha1hex()", "0"],
    ["EVAL", "return ARGV[1] .. KEYS[1] .. #KEYS .. #ARGV", "1", "k", "a", "b"],
    ["EVAL", "return 1", "-1"],
    ["EVAL", "return 1", "3", "a"],
    ["EVAL", "return 1", "x"],
    ["EVALSHA", "0000000000000000000000000000000000000000", "0"],
    ["EVALSHA", "abc", "0"],
    ["EVAL_RO", "return redis.call('set', 'a', 'b')", "0"],
    ["EVAL_RO", "return redis.call('get', 'a')", "0"],
    ["EVAL", "#!lua\nreturn 2", "0"],
    ["EVAL", "#!lua flags=no-writes\nreturn redis.call('set','a','b')", "0"],
    ["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
    ["EVAL", "#!python\nreturn 1", "0"],
    ["EVAL", "return redis.call('set', 'n', 3.7)", "0"],
    ["EVAL", "redis.call('set', 'n', 1e20) return redis.call('get', 'n')", "0"],
    ["EVAL", "return cjson.encode({a={1,2,3}, b='x/y'})", "0"],
    ["EVAL", "return cjson.encode({[1]=1, [5]=2})", "0"],
    ["EVAL", "return cjson.encode({[1]=1, [50]=2})", "0"],
    ["EVAL", "return cjson.encode({})", "0"],
    ["EVAL", "return cjson.encode(function() end)", "0"],
    ["EVAL", "return cjson.encode(1/0)", "0"],
    ["EVAL", "return cjson.encode('\\1\\127\"')", "0"],
    ["EVAL", "return cjson.encode({3, 0.1, true, cjson.null})", "0"],
    ["EVAL", "return cjson.decode('[1,2,null,{\"a\":true}]')[4].a", "0"],
    ["EVAL", "return cjson.decode('[1,\"x\",[2]]')", "0"],
    ["EVAL", "return {bit.band(12, 10), bit.bor(1, 2, 4), bit.bxor(5, 1), bit.bnot(0)}", "0"],
    ["EVAL", "return {bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4)}", "0"],
    ["EVAL", "return {bit.tobit(2^32 + 5), bit.tohex(255), bit.tohex(-1, -4), bit.bswap(1)}", "0"],
    ["EVAL", "return {bit.rol(1, 33), bit.ror(1, 1)}", "0"],
    ["EVAL", "return redis.setresp(4)", "0"],
    ["EVAL", "return redis.log(99, 'x')", "0"],
    ["EVAL", "return redis.log(redis.LOG_WARNING)", "0"],
    ["EVAL", "return redis.REDIS_VERSION", "0"],
    ["EVAL", "return redis.call('ping')", "0"],
    ["EVAL", "return redis.call('echo', 'e')", "0"],
    [
        "EVAL",
        "redis.call('select', 3) redis.call('set', 'in3', 'y') return redis.call('get', 'in3')",
        "0",
    ],
    ["EVAL", "return redis.call('get', 'in3')", "0"],
    ["EVAL", "return redis.call('select', 99)", "0"],
    ["EVAL", "return {type(os), type(io)}", "0"],
    ["EVAL", "return {type(loadstring), type(unpack), type(cjson), type(bit), type(_G)}", "0"],
    ["EVAL", "return type(setfenv)", "0"],
    ["EVAL", "return type(print)", "0"],
    ["EVAL", "return tostring(1.5) .. tostring(true) .. tostring(nil)", "0"],
    ["EVAL", "local t = {} for i = 1, 10 do t[i] = i * i end return t", "0"],
    ["EVAL", "return string.format('%d %s', 7, 'x')", "0"],
    ["EVAL", "return #KEYS", "0"],
    ["SCRIPT", "LOAD", "return 3"],
    ["EVALSHA", "09d3822de862f46d784e6a36848b4f0736dda47a", "0"],
    ["EVALSHA", "09D3822DE862F46D784E6A36848B4F0736DDA47A", "0"],
    ["SCRIPT", "EXISTS", "09d3822de862f46d784e6a36848b4f0736dda47a", "nope"],
    ["SCRIPT", "LOAD", "bad code here"],
    ["SCRIPT", "LOAD"],
    ["SCRIPT", "FLUSH", "bogus"],
    ["SCRIPT", "FLUSH", "ASYNC"],
    ["SCRIPT", "EXISTS", "09d3822de862f46d784e6a36848b4f0736dda47a"],
    ["SCRIPT", "KILL"],
    ["SCRIPT", "BOGUS"],
    ["SCRIPT", "EXISTS"],
]


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed")
@pytest.mark.parametrize("protocol", [2, 3])
def test_same_replies_as_redis(redis: Conn, redis3: Conn, protocol: int) -> None:
    conn = redis if protocol == 2 else redis3
    conn.command([b"FLUSHALL"])
    conn.command([b"SCRIPT", b"FLUSH"])
    sm = KVStateMachine()
    for argv in CASES:
        words = [a.encode() for a in argv]
        assert normalized(words, ours(sm, words, protocol)) == normalized(
            words, conn.command(words)
        ), argv


# --- redis-py's Lock scripts -------------------------------------------------------------------

RELEASE = """
local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1
"""
EXTEND = """
local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
local expiration = redis.call('pttl', KEYS[1])
if not expiration then
    expiration = 0
end
if expiration < 0 then
    return 0
end
local newttl = ARGV[2]
if ARGV[3] == "0" then
    newttl = ARGV[2] + expiration
end
redis.call('pexpire', KEYS[1], newttl)
return 1
"""


def test_lock_scripts() -> None:
    sm = KVStateMachine()
    assert run(sm, "SET", "lock", "me", "NX", "PX", "1000") == b"+OK\r\n"
    assert run(sm, "SET", "lock", "you", "NX", "PX", "1000") == b"$-1\r\n"
    assert ev(sm, EXTEND, "1", "lock", "you", "500", "0") == 0
    assert ev(sm, EXTEND, "1", "lock", "me", "500", "0") == 1
    assert decode_reply(run(sm, "PTTL", "lock")) == 1500
    assert ev(sm, EXTEND, "1", "lock", "me", "300", "1") == 1
    assert decode_reply(run(sm, "PTTL", "lock")) == 300
    assert ev(sm, RELEASE, "1", "lock", "you") == 0
    assert ev(sm, RELEASE, "1", "lock", "me") == 1
    assert decode_reply(run(sm, "EXISTS", "lock")) == 0


# --- determinism -----------------------------------------------------------------------------

DRAWS = "return {math.random(1000), math.random(5, 9), tostring(math.random()), tostring({})}"


def test_scripts_give_the_same_result_on_every_replica_and_after_restore() -> None:
    a, b = KVStateMachine(), KVStateMachine()
    log = [
        encode_request([b"SET", b"x", b"1"]),
        encode_request([b"EVAL", DRAWS.encode(), b"0"], time=T0),
        encode_request([b"SCRIPT", b"LOAD", b"return redis.call('incr', KEYS[1])"]),
        encode_request([b"EVAL", b"return redis.call('randomkey')", b"0"], time=T0),
        encode_request([b"EVAL", b"return redis.call('time')", b"0"], time=T0 + 1234),
    ]
    replies = [[sm.apply(e) for e in log] for sm in (a, b)]
    assert replies[0] == replies[1]
    assert decode_reply(replies[0][4]) == [b"1700000001", b"234000"]
    restored = KVStateMachine()
    restored.restore(a.snapshot())
    sha = b"8c6a9e6fd6f9b2d7b1ac4d8e9a0b1eb7b4c5f0b8"
    del sha
    evalsha = encode_request([b"EVALSHA", decode_reply(replies[0][2]), b"1", b"x"], time=T0)  # type: ignore[list-item]
    assert a.apply(evalsha) == restored.apply(evalsha) == b":2\r\n"
    draws = encode_request([b"EVAL", DRAWS.encode(), b"0"], time=T0)
    assert a.apply(draws) == restored.apply(draws)
    assert a.digest() == restored.digest()


def test_math_random_follows_the_log_position() -> None:
    sm = KVStateMachine()
    first = run(sm, "EVAL", DRAWS, "0")
    second = run(sm, "EVAL", DRAWS, "0")
    assert first != second  # a new entry, a new seed
    seeded = run(sm, "EVAL", "math.randomseed(7) return tostring(math.random())", "0")
    again = run(sm, "EVAL", "math.randomseed(7) return tostring(math.random())", "0")
    assert seeded == again


# --- the sandbox and the limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        "return redis.call.__class__",
        "return cjson.encode.__self__",
        "return bit.band.__globals__",
        "return cjson.null.__class__",
        "return redis.sha1hex.__self__.sha",
        "return python",
        "return os.time()",
        "return io.open('/etc/passwd')",
        "return debug.getinfo(1)",
        "return require('os')",
        "return loadfile('/etc/passwd')",
        "return dofile('/etc/passwd')",
        "return getfenv(0)",
    ],
)
def test_scripts_cannot_reach_the_machine(script: str) -> None:
    reply = run(KVStateMachine(), "EVAL", script, "0")
    assert reply.startswith(b"-ERR"), reply


def test_a_runaway_script_is_ended_at_the_same_point_everywhere() -> None:
    replicas = [KVStateMachine(max_instructions=100_000) for _ in range(2)]
    for script in (
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do end end) co()",
        "redis.call('incr', 'n') while true do redis.call('incr', 'n') end",
    ):
        replies = [run(sm, "EVAL", script, "0") for sm in replicas]
        assert replies[0] == replies[1]
        assert replies[0].startswith(b"-ERR script killed: it ran past 100000 Lua instructions")
    # Writes made before the limit stay, the same on every replica (as after any error).
    counts = [run(sm, "GET", "n") for sm in replicas]
    assert counts[0] == counts[1] != b"$-1\r\n"
    assert replicas[0].digest() == replicas[1].digest()


def test_a_script_that_allocates_too_much_is_ended() -> None:
    sm = KVStateMachine(script_memory=8 << 20)
    reply = run(sm, "EVAL", "local s = 'x' while true do s = s .. s end", "0")
    assert reply.startswith(b"-ERR script ran out of memory")
    assert run(sm, "EVAL", "return 1", "0") == b":1\r\n"  # the next script has a fresh state


def test_scripts_are_exactly_once_inside_sessions() -> None:
    sm = KVStateMachine()
    request = encode_request(
        [b"EVAL", b"return redis.call('incr', KEYS[1])", b"1", b"n"], client_id=5, seq=1, time=T0
    )
    assert sm.apply(request) == b":1\r\n"
    assert sm.apply(request) == b":1\r\n"  # the retry is answered from the session
    assert run(sm, "GET", "n") == b"$1\r\n1\r\n"


def test_scripts_see_the_replicated_clock_and_set_ttls_from_it() -> None:
    sm = KVStateMachine()
    script = "redis.call('set', KEYS[1], 'v', 'PX', 1000) return redis.call('pexpiretime', KEYS[1])"
    assert run(sm, "EVAL", script, "1", "k", time=T0) == b":%d\r\n" % (T0 + 1000)
