"""Hashes, lists, sets and sorted sets: a pyxos node against a real redis-server, the same
commands on a connection to each, reply for reply under RESP2 and RESP3.

Replies whose order is a hash table's in Redis (SMEMBERS of a big set...) or that are
random (SPOP, SRANDMEMBER, HRANDFIELD, ZRANDMEMBER) are compared as sorted multisets, or
only by size where the draw itself differs; everything else byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_ref import HAVE_REDIS, Conn, pyxos_node, reference_redis

from pyxos.resp.replies import decode_reply

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed"),
]

Address = str | tuple[str, int]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Address, Address]]:
    with (
        reference_redis(tmp_path_factory.mktemp("redis")) as redis_path,
        pyxos_node(tmp_path_factory.mktemp("pyxos")) as pyxos_address,
    ):
        yield redis_path, pyxos_address


def unordered(reply: bytes) -> object:
    """A reply with every array's items sorted (for replies in hash-table order)."""

    def walk(v: object) -> object:
        if isinstance(v, list):
            return sorted((walk(x) for x in v), key=repr)
        if isinstance(v, dict):
            return sorted((repr(walk(k)), walk(x)) for k, x in v.items())
        return v

    return repr((reply[:1], walk(decode_reply(reply))))


def size_of(reply: bytes) -> object:
    """Only the shape: the type byte and the number of items (for random draws)."""
    value = decode_reply(reply)
    return (reply[:1], len(value) if isinstance(value, list | dict) else type(value).__name__)


class Pair:
    def __init__(self, servers: tuple[Address, Address], protocol: int) -> None:
        self.redis = Conn(servers[0], protocol)
        self.pyxos = Conn(servers[1], protocol)

    def run(self, line: str) -> None:
        """One command: ``~`` first compares unordered, ``#`` only the size."""
        mode = line[0] if line[0] in "~#" else ""
        words = [w.encode() for w in line.lstrip("~#").split()]
        theirs, ours = self.redis.command(words), self.pyxos.command(words)
        if mode == "~":
            assert unordered(ours) == unordered(theirs), (line, ours, theirs)
        elif mode == "#":
            assert size_of(ours) == size_of(theirs), (line, ours, theirs)
        else:
            assert ours == theirs, (line, ours, theirs)

    def close(self) -> None:
        self.redis.close()
        self.pyxos.close()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(servers: tuple[Address, Address], request: pytest.FixtureRequest) -> Iterator[Pair]:
    p = Pair(servers, request.param)
    p.run("FLUSHALL")
    yield p
    p.close()


def play(pair: Pair, script: str) -> None:
    for line in script.strip().splitlines():
        if line.strip():
            pair.run(line.strip())


HASHES = """
HSET h a 1 b 2 c 3
HSET h a 9 d 4
HSET h x
HSET h
HGET h a
HGET h nope
HGET nokey a
HMGET h a nope d
HMGET nokey a b
HMSET h e 5 f 6
HMSET h e
HSETNX h a 0
HSETNX h z 26
HGETALL h
HGETALL nokey
HKEYS h
HVALS h
HLEN h
HLEN nokey
HSTRLEN h a
HSTRLEN h nope
HEXISTS h a
HEXISTS h nope
HDEL h a b nope
HDEL h a
HINCRBY h c 10
HINCRBY h c -100
HINCRBY h new 5
HINCRBY h c x
HINCRBY h e 9223372036854775807
HINCRBY h c 9223372036854775807
HSET h s hello
HINCRBY h s 1
HINCRBYFLOAT h f 1.5
HINCRBYFLOAT h f -0.25e1
HINCRBYFLOAT h f x
HINCRBYFLOAT h f inf
HINCRBYFLOAT h s 1
HINCRBYFLOAT h fresh 3.0e3
HGETALL h
HSCAN h 0
HSCAN h 0 MATCH [a-f]*
HSCAN h 0 COUNT 1
HINCRBYFLOAT h big 1.7e308
HINCRBYFLOAT h big 1.7e308
HINCRBYFLOAT h big 1.7e308
~HGETALL h
~HKEYS h
HSCAN h 0 COUNT 0
HSCAN h 0 COUNT x
HSCAN h 0 NOPE
HSCAN h x
HSCAN nokey 0 NOPE
#HRANDFIELD h
#HRANDFIELD h 3
#HRANDFIELD h -5 WITHVALUES
~HRANDFIELD h 100 WITHVALUES
HRANDFIELD h 0
HRANDFIELD h x
HRANDFIELD h 1 WITHVALUES x
HRANDFIELD h 1 NOPE
HRANDFIELD nokey
HRANDFIELD nokey 5
HRANDFIELD h -9223372036854775807 WITHVALUES
HRANDFIELD h -9223372036854775808
HRANDFIELD h -9223372036854775808 WITHVALUES
HDEL h c d e f z new s fresh big
EXISTS h
TYPE h
"""


def test_hashes(pair: Pair) -> None:
    play(pair, HASHES)


VALUE_MODEL = """
HSET h f v
SET s str
TYPE h
TYPE s
TYPE nope
GET h
SET h x GET
GETSET h x
GETDEL h
APPEND h x
INCR h
STRLEN h
GETRANGE h 0 1
SETRANGE h 0 x
MGET h s nope
LCS h s
SETBIT h 1 1
GETBIT h 1
BITCOUNT h
HGET s f
HSET s f v
HLEN s
OBJECT ENCODING h
OBJECT REFCOUNT h
OBJECT ENCODING s
HSET big f 01234567890123456789012345678901234567890123456789012345678901234567890123456789
OBJECT ENCODING big
EXISTS h s nope h
RENAME h h2
HGETALL h2
COPY h2 h3
HSET h3 g w
HGETALL h2
HGETALL h3
COPY h2 s
COPY h2 s REPLACE
TYPE s
MOVE h3 3
SELECT 3
HGETALL h3
SELECT 0
~SCAN 0 TYPE hash
~SCAN 0 TYPE string
~KEYS *
DEL h2 s big nope
DBSIZE
~COMMAND INFO hset zadd blpop sinterstore lmove zrangestore bzpopmax
COMMAND GETKEYS BLPOP a b 0
COMMAND GETKEYS BLMOVE a b LEFT RIGHT 0
COMMAND GETKEYS SMOVE a b m
COMMAND GETKEYS ZRANGESTORE d s 0 1
SET s x
HSET s a b
SET s x
"""


def test_value_model(pair: Pair) -> None:
    play(pair, VALUE_MODEL)


EXPIRY_AND_SCRIPTS = """
HSET h f v
EXPIRE h 100
TTL h
HSET h g w
TTL h
PERSIST h
TTL h
PEXPIRE h 1
EVAL "return 1" 0
MULTI
HSET m a 1
HINCRBY m a 2
HGETALL m
GET m
EXEC
EVAL "return redis.call('HGETALL', KEYS[1])" 1 m
EVAL "return redis.call('HINCRBYFLOAT', KEYS[1], 'a', '0.5')" 1 m
EVAL "return redis.pcall('GET', KEYS[1])" 1 m
EVAL "return redis.call('HMGET', KEYS[1], 'a', 'zz')" 1 m
"""


def test_expiry_transactions_and_scripts(pair: Pair) -> None:
    script = EXPIRY_AND_SCRIPTS.strip().splitlines()
    for line in script:
        if line.startswith("EVAL"):
            body = line.split('"')[1]
            rest = line.split('"')[2].split()
            words = [b"EVAL", body.encode(), *(w.encode() for w in rest)]
            theirs, ours = pair.redis.command(words), pair.pyxos.command(words)
            assert ours == theirs, (line, ours, theirs)
        else:
            pair.run(line)
        if line.startswith("PEXPIRE"):
            # Both servers drop the key once its millisecond has passed.
            for conn in (pair.redis, pair.pyxos):
                while conn.command([b"EXISTS", b"h"]) != b":0\r\n":
                    pass
    pair.run("EXISTS h")


SETS = """
SADD s a b c
SADD s a d
SADD i 3 1 2 10 -5
SADD i 2
~SMEMBERS s
SMEMBERS i
SMEMBERS nokey
OBJECT ENCODING i
OBJECT ENCODING s
SISMEMBER s a
SISMEMBER s z
SISMEMBER nokey a
SMISMEMBER s a z d
SMISMEMBER nokey a
SCARD s
SCARD nokey
SREM s a z
SREM nokey a
SREM i 10 -5
SMEMBERS i
SPOP s -1
SPOP s x
SPOP s 1 2
SPOP nokey
SPOP nokey 3
SPOP s 0
SRANDMEMBER s x
SRANDMEMBER s 1 2
SRANDMEMBER s -9223372036854775808
SRANDMEMBER nokey
SRANDMEMBER nokey 3
SRANDMEMBER s 0
SRANDMEMBER i 100
#SRANDMEMBER i -7
#SRANDMEMBER i 2
#SRANDMEMBER s
SADD t c d e 1
SADD neg -1 -2
SMEMBERS neg
MULTI
SMEMBERS neg
ZADD nz2 -1 -1
ZSCORE nz2 -1
GET nokey
EXEC
~SINTER s t
SINTER s nokey
~SUNION s t i
~SDIFF s t
SDIFF nokey s
SINTER i
SINTERSTORE dst s t
~SMEMBERS dst
SUNIONSTORE dst i s
SDIFFSTORE dst i t
SMEMBERS dst
SINTERSTORE dst s nokey
EXISTS dst
SINTERCARD 2 s t
SINTERCARD 2 s t LIMIT 1
SINTERCARD 0 s
SINTERCARD 3 s t
SINTERCARD 1 s LIMIT -1
SINTERCARD 1 s LIMIT x
SINTERCARD 1 s FOO
SINTERCARD x s
SMOVE s t c
SMOVE s t zz
SMOVE s s d
SMOVE s s zz
SMOVE nokey s a
SMOVE s dst2 d
EXISTS s
SMEMBERS dst2
SSCAN i 0
SSCAN i 0 MATCH 1*
SSCAN i x
SSCAN nokey 0 FOO
~SSCAN t 0
SET str x
SADD str a
SMEMBERS str
SINTER s str
SINTER nokey str
SMOVE nokey str a
SMOVE str nokey a
SMOVE t str c
HSET h f v
SUNIONSTORE h t
TYPE h
"""


def test_sets(pair: Pair) -> None:
    play(pair, SETS)


def test_spop_pops_what_it_returns(pair: Pair) -> None:
    for conn in (pair.redis, pair.pyxos):
        conn.command([b"SADD", b"s", *[b"%d" % i for i in range(20)], b"x", b"y"])
        popped = decode_reply(conn.command([b"SPOP", b"s", b"5"]))
        one = decode_reply(conn.command([b"SPOP", b"s"]))
        rest = decode_reply(conn.command([b"SMEMBERS", b"s"]))
        assert isinstance(popped, list) and isinstance(rest, list)
        assert len(popped) == 5 and len(set(popped)) == 5
        assert sorted([*popped, one, *rest]) == sorted(
            [b"%d" % i for i in range(20)] + [b"x", b"y"]
        )


ZSETS = """
ZADD z 1 a 2 b 3 c
ZADD z 1.1 d inf e -inf f 0.1 g -0 h 1e300 i 123456789012345678 j 3.0000000000000004 k
ZADD z 0x10 hex
ZADD z 1e400 big
ZADD z nan n
ZADD z " 1" sp
ZADD z 1 a 2
ZADD z x a
ZADD z NX XX 1 a
ZADD z GT LT 1 a
ZADD z NX GT 1 a
ZADD z INCR 1 a 2 b
ZADD z
ZADD z NX
ZADD z XX 5 a 6 new
ZADD z NX 7 a 8 new
ZADD z CH 9 a 8 new 1 zz
ZADD z GT CH 1 a 10 b
ZADD z LT CH 1 a 10 b
ZADD z INCR 1.5 a
ZADD z NX INCR 1 a
ZADD z XX INCR 1 nope
ZADD z INCR inf a
ZADD z INCR -inf a
ZADD nokey XX 1 a
ZADD nokey XX INCR 1 a
EXISTS nokey
ZRANGE z 0 -1 WITHSCORES
ZINCRBY z 2.5 b
ZINCRBY z x b
ZINCRBY z -inf e
ZINCRBY nz 1 m
ZINCRBY nz -2 neg
ZSCORE nz neg
ZMSCORE nz neg m
ZRANGE nz 0 -1 WITHSCORES
ZSCORE z a
ZSCORE z e
ZSCORE z h
ZSCORE z nope
ZSCORE nokey a
ZMSCORE z a nope e
ZMSCORE nokey a
ZCARD z
ZCARD nokey
ZRANK z a
ZRANK z nope
ZREVRANK z a
ZREVRANK nokey a
ZCOUNT z -inf +inf
ZCOUNT z (1 3
ZCOUNT z 1 (3
ZCOUNT z (inf +inf
ZCOUNT z -inf (-inf
ZCOUNT z x 1
ZCOUNT z ( 1
ZCOUNT nokey 1 2
ZRANGE z 0 2
ZRANGE z -3 -1 WITHSCORES
ZRANGE z 5 1
ZRANGE z 0 100
ZRANGE z x 1
ZRANGE z 0 -1 REV
ZRANGE z 0 1 LIMIT 0 1
ZRANGE z 0 -1 LIMIT 0 -1
ZRANGE z (1 3 BYSCORE
ZRANGE z (1 3 BYSCORE REV
ZRANGE z 3 (1 BYSCORE REV WITHSCORES
ZRANGE z -inf +inf BYSCORE LIMIT 2 3
ZRANGE z +inf -inf BYSCORE REV LIMIT 2 3 WITHSCORES
ZRANGE z -inf +inf BYSCORE LIMIT -1 2
ZRANGE z -inf +inf BYSCORE LIMIT 1 -1
ZRANGE z -inf +inf BYSCORE LIMIT 100 1
ZRANGE z - + BYLEX
ZRANGE z - + BYLEX WITHSCORES
ZRANGE z 0 1 BYSCORE BYLEX
ZRANGE z 0 1 REV REV
ZRANGE z 0 1 FOO
ZRANGE z 0 1 LIMIT x 1
ZRANGE nokey 0 -1
ZRANGE nokey x 1
ZRANGEBYSCORE z -inf +inf WITHSCORES
ZRANGEBYSCORE z (0 1e10 LIMIT 1 2
ZRANGEBYSCORE z 0 1 BYSCORE
ZRANGEBYSCORE z 0 1 REV
ZREVRANGEBYSCORE z +inf -inf WITHSCORES LIMIT 0 3
ZREVRANGEBYSCORE z 3 (1
ZREVRANGE z 0 2 WITHSCORES
ZREVRANGE z 0 2 LIMIT 0 1
ZREMRANGEBYRANK z x 1
ZREMRANGEBYSCORE z x 1
ZREMRANGEBYLEX z x 1
ZADD l 0 a 0 b 0 c 0 d 0 e 0 ff 0 g
ZRANGEBYLEX l - +
ZRANGEBYLEX l [b (e
ZRANGEBYLEX l (b [e LIMIT 1 2
ZRANGEBYLEX l [f +
ZRANGEBYLEX l + -
ZRANGEBYLEX l [e [b
ZRANGEBYLEX l b e
ZRANGEBYLEX l - + WITHSCORES
ZREVRANGEBYLEX l + -
ZREVRANGEBYLEX l (e [b
ZLEXCOUNT l - +
ZLEXCOUNT l [b [d
ZLEXCOUNT l x y
ZREMRANGEBYLEX l [b (d
ZRANGE l 0 -1
ZREMRANGEBYRANK l 0 1
ZREMRANGEBYRANK l -1 -1
ZRANGE l 0 -1
ZREMRANGEBYSCORE l -inf +inf
EXISTS l
ZRANGESTORE dst z 0 2
ZRANGE dst 0 -1 WITHSCORES
ZRANGESTORE dst z (1 +inf BYSCORE LIMIT 0 2
ZRANGE dst 0 -1 WITHSCORES
ZRANGESTORE dst z 0 -1 WITHSCORES
ZRANGESTORE dst nokey 0 -1
EXISTS dst
ZPOPMIN z
ZPOPMIN z 2
ZPOPMAX z
ZPOPMAX z 3
ZPOPMIN z 0
ZPOPMIN z -1
ZPOPMIN z x
ZPOPMIN z 1 2
ZPOPMIN nokey
ZPOPMIN nokey 2
ZSCAN z 0
ZSCAN z 0 MATCH [a-c]
ZSCAN z x
ZSCAN nokey 0
#ZRANDMEMBER z
#ZRANDMEMBER z 2
#ZRANDMEMBER z -5 WITHSCORES
~ZRANDMEMBER z 100 WITHSCORES
ZRANDMEMBER z x
ZRANDMEMBER z -9223372036854775808
ZRANDMEMBER z -9223372036854775807 WITHSCORES
ZRANDMEMBER z 1 WITHSCORES x
ZRANDMEMBER nokey
ZRANDMEMBER nokey 3
ZREM z a b nope
ZREM nokey a
ZADD u1 1 a 2 b 3 c
ZADD u2 10 b 20 c 30 d
SADD s1 a d x
ZUNIONSTORE out 2 u1 u2
ZRANGE out 0 -1 WITHSCORES
ZUNIONSTORE out 3 u1 u2 s1 WEIGHTS 2 0.5 inf
ZRANGE out 0 -1 WITHSCORES
ZUNIONSTORE out 2 u1 u2 AGGREGATE MAX
ZRANGE out 0 -1 WITHSCORES
ZINTERSTORE out 2 u1 u2 AGGREGATE MIN
ZRANGE out 0 -1 WITHSCORES
ZINTERSTORE out 3 u1 u2 s1
EXISTS out
ZINTERSTORE out 2 u1 nokey
ZDIFFSTORE out 2 u1 u2
ZRANGE out 0 -1 WITHSCORES
ZDIFFSTORE out 1 u1 WEIGHTS 1
ZUNIONSTORE out 0 u1
ZUNIONSTORE out 3 u1 u2
ZUNIONSTORE out 1 u1 WEIGHTS x
ZUNIONSTORE out 1 u1 AGGREGATE foo
ZUNIONSTORE out 1 u1 WITHSCORES
ZUNIONSTORE out x u1
SET str x
ZUNIONSTORE out 2 u1 str
ZADD str 1 a
ZRANGE str 0 -1
ZSCORE str a
ZADD big 1 01234567890123456789012345678901234567890123456789012345678901234567890123
OBJECT ENCODING big
OBJECT ENCODING u1
TYPE u1
"""


def test_sorted_sets(pair: Pair) -> None:
    play(pair, ZSETS)


LISTS = """
RPUSH l a b c
LPUSH l z y
RPUSH l
LPUSHX nokey a
RPUSHX nokey a
LPUSHX l x
RPUSHX l w
EXISTS nokey
LRANGE l 0 -1
LRANGE l -3 -1
LRANGE l 5 1
LRANGE l 0 100
LRANGE l x 1
LRANGE nokey 0 -1
LLEN l
LLEN nokey
LINDEX l 0
LINDEX l -1
LINDEX l 100
LINDEX l x
LINDEX nokey 0
LSET l 1 Y
LSET l -1 W
LSET l 100 x
LSET l x y
LSET nokey 0 x
LRANGE l 0 -1
RPUSH r a b a c a d a
LREM r 2 a
LRANGE r 0 -1
LREM r -1 a
LRANGE r 0 -1
LREM r 0 a
LREM r 0 nope
LREM r x a
LREM nokey 0 a
LRANGE r 0 -1
LTRIM r 1 -1
LRANGE r 0 -1
LTRIM r 5 10
EXISTS r
LTRIM nokey 0 1
LTRIM l x 1
RPUSH i a b c
LINSERT i BEFORE b x
LINSERT i AFTER c y
LINSERT i AFTER nope y
LINSERT i MIDDLE b x
LINSERT nokey BEFORE a x
LRANGE i 0 -1
RPUSH p a b c a b c a
LPOS p a
LPOS p a RANK 2
LPOS p a RANK -1
LPOS p a RANK -2 COUNT 2
LPOS p a COUNT 0
LPOS p a COUNT 2 RANK 2
LPOS p a MAXLEN 3 COUNT 0
LPOS p a RANK -1 MAXLEN 2 COUNT 0
LPOS p nope
LPOS p nope COUNT 0
LPOS p a RANK 0
LPOS p a RANK x
LPOS p a RANK -9223372036854775808
LPOS p a COUNT x
LPOS p a COUNT -1
LPOS p a MAXLEN -1
LPOS p a FOO
LPOS p a RANK
LPOS nokey a
LPOS nokey a COUNT 0
LPOP p
RPOP p
LPOP p 2
RPOP p 0
LPOP p 100
EXISTS p
LPOP nokey
LPOP nokey 2
LPOP nokey 0
LPOP l -1
LPOP l x
LPOP l 1 2
RPUSH m a b c
LMOVE m m LEFT RIGHT
LRANGE m 0 -1
LMOVE m n RIGHT LEFT
LMOVE m n LEFT LEFT
LMOVE m n left right
LRANGE n 0 -1
EXISTS m
LMOVE nokey n LEFT LEFT
LMOVE n n UP LEFT
RPOPLPUSH n o
RPOPLPUSH nokey o
LRANGE o 0 -1
RPUSH one x
LMOVE one one LEFT LEFT
LRANGE one 0 -1
SET str v
LPUSH str a
LRANGE str 0 -1
LMOVE one str LEFT LEFT
LMOVE nokey str LEFT LEFT
LMOVE str one LEFT LEFT
BLPOP str 0
BLPOP nokey str 0
BLPOP l x
BLPOP l -1
BLPOP l 1e400
BLPOP l 0.01
BRPOP l nokey 0
BLPOP nokey l 0
BLMOVE l n LEFT RIGHT 0
BLMOVE l n LEFT UP 0
BLMOVE l n LEFT RIGHT x
LRANGE n 0 -1
OBJECT ENCODING l
TYPE l
MULTI
BLPOP nokey 0
BRPOP nokey 1
BLMOVE nokey x LEFT RIGHT 0
BZPOPMIN nokey 0
RPUSH nokey a
BLPOP nokey 0
EXEC
"""


def test_lists(pair: Pair) -> None:
    play(pair, LISTS)


# --- blocking pops -------------------------------------------------------------------------------


def wait_blocked(conn: Conn, clients: int) -> None:
    """Poll CLIENT LIST until ``clients`` connections are in a blocking pop (both servers
    name the command a connection is running)."""
    while True:
        listing = decode_reply(conn.command([b"CLIENT", b"LIST"]))
        text = listing.text if hasattr(listing, "text") else listing
        assert isinstance(text, bytes)
        if sum(1 for line in text.splitlines() if b" cmd=b" in line) >= clients:
            return


@pytest.mark.parametrize("protocol", [2, 3])
def test_blocked_clients_are_served_first_blocked_first(
    servers: tuple[Address, Address], protocol: int
) -> None:
    pusher = Pair(servers, protocol)
    pusher.run("FLUSHALL")
    first, second = Pair(servers, protocol), Pair(servers, protocol)
    try:
        for side in ("redis", "pyxos"):
            a, b, c = (getattr(p, side) for p in (first, second, pusher))
            a.send([b"BLPOP", b"q", b"other", b"0"])
            wait_blocked(c, 1)
            b.send([b"BLPOP", b"other", b"q", b"0"])
            wait_blocked(c, 2)
        pusher.run("RPUSH q one")
        assert first.pyxos.read() == first.redis.read()
        pusher.run("LPUSH other two")
        assert second.pyxos.read() == second.redis.read()
        pusher.run("EXISTS q other")
    finally:
        for p in (first, second, pusher):
            p.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_blocking_pops_of_every_kind_wake_on_a_push(
    servers: tuple[Address, Address], protocol: int
) -> None:
    pusher = Pair(servers, protocol)
    pusher.run("FLUSHALL")
    waiter = Pair(servers, protocol)
    try:
        for command, push in (
            ("BRPOP a b 0", "RPUSH b x y"),
            ("BLMOVE src dst RIGHT LEFT 0", "RPUSH src m n"),
            ("BZPOPMIN z1 z2 0", "ZADD z2 1.5 m 2 n"),
            ("BZPOPMAX z3 0", "ZADD z3 -1 lo 3.25 hi"),
            ("BLPOP renamed 0", "RPUSH tmp v"),
        ):
            words = [w.encode() for w in command.split()]
            for side in ("redis", "pyxos"):
                getattr(waiter, side).send(words)
                wait_blocked(getattr(pusher, side), 1)
            pusher.run(push)
            if command.startswith("BLPOP renamed"):
                pusher.run("RENAME tmp renamed")
            assert waiter.pyxos.read() == waiter.redis.read(), command
        for line in ("LRANGE b 0 -1", "LRANGE src 0 -1", "LRANGE dst 0 -1", "EXISTS renamed",
                     "ZRANGE z2 0 -1 WITHSCORES", "ZRANGE z3 0 -1 WITHSCORES"):  # fmt: skip
            pusher.run(line)
    finally:
        pusher.close()
        waiter.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_blocking_pop_that_times_out_changes_nothing(
    servers: tuple[Address, Address], protocol: int
) -> None:
    pair = Pair(servers, protocol)
    try:
        pair.run("FLUSHALL")
        pair.run("SET s v")
        for line in ("BLPOP l 0.05", "BRPOP l1 l2 0.01", "BLMOVE l m LEFT LEFT 0.02",
                     "BZPOPMIN z 0.03", "BZPOPMAX z 0.01", "BLPOP s 0.01", "BLPOP l -1",
                     "BLPOP l x", "DBSIZE", "KEYS *"):  # fmt: skip
            pair.run(line)
    finally:
        pair.close()


def test_a_blocked_client_on_a_follower_wakes_when_a_push_is_applied_there(
    tmp_path: pytest.TempPathFactory,
) -> None:
    from redis_ref import FAST

    from pyxos.launch.local_cluster import LocalCluster, find_base_port

    cluster = LocalCluster(3, find_base_port(3), tmp_path, extra_args=FAST)  # type: ignore[arg-type]
    cluster.start()
    try:
        cluster.wait_ready()
        conns = [Conn(("127.0.0.1", cluster.client_port(i))) for i in (1, 2, 3)]
        observers = [Conn(("127.0.0.1", cluster.client_port(i))) for i in (2, 3)]
        conns[1].send([b"BLPOP", b"jobs", b"0"])
        conns[2].send([b"BZPOPMIN", b"board", b"0"])
        for observer in observers:
            wait_blocked(observer, 1)
            observer.close()
        assert conns[0].command([b"RPUSH", b"jobs", b"j1", b"j2"]) == b":2\r\n"
        assert conns[1].read() == b"*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n"
        assert conns[0].command([b"ZADD", b"board", b"7", b"p"]) == b":1\r\n"
        assert conns[2].read() == b"*3\r\n$5\r\nboard\r\n$1\r\np\r\n$1\r\n7\r\n"
        assert conns[0].command([b"LRANGE", b"jobs", b"0", b"-1"]) == b"*1\r\n$2\r\nj2\r\n"
        for conn in conns:
            conn.close()
    finally:
        cluster.close()


CHANGES = [
    "HSET h f 2", "LPUSH l x", "SREM s a", "ZINCRBY z 1 m", "HDEL h f", "LPOP l", "ZADD z 1 m",
    "SADD s a", "LTRIM l 0 -1", "HSET h f 1", "SREM s zz", "ZREM z zz", "HDEL h zz",
]  # fmt: skip


@pytest.mark.parametrize("change", CHANGES)
def test_watch_sees_changes_made_in_place(servers: tuple[Address, Address], change: str) -> None:
    pair, other = Pair(servers, 2), Pair(servers, 2)
    try:
        pair.run("FLUSHALL")
        for line in ("HSET h f 1", "RPUSH l a", "SADD s a", "ZADD z 1 m"):
            pair.run(line)
        key = change.split()[1]
        pair.run(f"WATCH {key}")
        other.run(change)
        pair.run("MULTI")
        pair.run("PING")
        pair.run("EXEC")  # null where the change changed the value, as in Redis
    finally:
        pair.close()
        other.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_reads_the_types_as_from_redis(
    servers: tuple[Address, Address], protocol: int
) -> None:
    import redis as redis_py

    _, (host, port) = servers
    ours = redis_py.Redis(host=host, port=port, protocol=protocol)
    theirs = redis_py.Redis(unix_socket_path=servers[0], protocol=protocol)  # type: ignore[arg-type]
    try:
        for r in (ours, theirs):
            r.flushall()
            r.hset("h", mapping={"a": "1", "b": "2"})
            r.zadd("z", {"m": 1.5, "n": 0.1})
            r.sadd("s", "x", "y")
            r.rpush("l", "p", "q")
        for call in (
            lambda r: r.hgetall("h"),
            lambda r: r.zscore("z", "n"),
            lambda r: r.zrange("z", 0, -1, withscores=True),
            lambda r: r.zpopmin("z"),
            lambda r: r.zincrby("z", 2, "m"),
            lambda r: sorted(r.smembers("s")),
            lambda r: r.lpop("l", 5),
            lambda r: r.blpop(["l"], timeout=0.05),
            lambda r: r.hincrbyfloat("h", "a", 0.5),
            lambda r: r.type("z"),
        ):
            assert call(ours) == call(theirs)
    finally:
        ours.close()
        theirs.close()
