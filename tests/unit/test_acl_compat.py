"""Users and ACLs against a real redis-server 7 given the same users, reply for reply, under
RESP2 and RESP3: ACL's own replies and errors, AUTH and HELLO, and -NOPERM for every
category of command and for key patterns (by ACL DRYRUN over every command pyxos has, and
by running commands as the user)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from redis_ref import HAVE_REDIS, Conn, pyxos_node, reference_redis

from pyxos.kv.acl_rules import CATEGORIES
from pyxos.kv.commands import COMMANDS, SUBCOMMANDS
from pyxos.resp.requests import encode_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed"),
]

Pair = tuple[str, tuple[str, int]]
_CLIENT_ID = re.compile(rb"\$2\r\nid\r\n:\d+")
"""HELLO's connection id, which differs between any two servers."""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with (
        reference_redis(tmp_path_factory.mktemp("redis")) as redis,
        pyxos_node(tmp_path_factory.mktemp("pyxos")) as pyxos,
    ):
        yield redis, pyxos


def read_until(conn: Conn, end: bytes) -> bytes:
    out = b""
    while not out.endswith(end):
        chunk = conn.sock.recv(65536)
        assert chunk, out
        out += chunk
    return out


def words(line: str) -> list[bytes]:
    return [w.encode() for w in line.split()]


def clean(conn: Conn) -> None:
    """Only the default user, as it is at start."""
    names = re.findall(rb"\$\d+\r\n([^\r]*)\r\n", conn.command([b"ACL", b"USERS"]))
    others = [n for n in names if n != b"default"]
    if others:
        conn.command([b"ACL", b"DELUSER", *others])
    conn.command(words("ACL SETUSER default reset on nopass ~* &* +@all"))
    conn.command(words("ACL SETUSER default resetpass nopass"))


class Both:
    """The same commands to both servers, each on its own connections."""

    def __init__(self, servers: Pair, protocol: int) -> None:
        self.redis, self.pyxos = servers
        self.protocol = protocol
        self.opened: list[Conn] = []
        self.admin = self.conns()
        for conn in self.admin:
            clean(conn)

    def conns(self) -> tuple[Conn, Conn]:
        pair = Conn(self.redis, self.protocol), Conn(self.pyxos, self.protocol)
        self.opened += pair
        return pair

    def close(self) -> None:
        for conn in self.opened:
            conn.close()

    def same(self, line: str | list[bytes], conns: tuple[Conn, Conn] | None = None) -> bytes:
        argv = words(line) if isinstance(line, str) else line
        theirs, ours = conns or self.admin
        expected = _CLIENT_ID.sub(b"id:", theirs.command(argv))
        assert _CLIENT_ID.sub(b"id:", ours.command(argv)) == expected, argv
        return expected


@pytest.fixture
def both2(servers: Pair) -> Iterator[Both]:
    yield from _both(servers, 2)


@pytest.fixture(params=[2, 3])
def both(servers: Pair, request: pytest.FixtureRequest) -> Iterator[Both]:
    yield from _both(servers, request.param)


def _both(servers: Pair, protocol: int) -> Iterator[Both]:
    pair = Both(servers, protocol)
    try:
        yield pair
    finally:
        pair.close()


REPLIES = """
ACL LIST
ACL GETUSER default
ACL USERS
ACL WHOAMI
ACL SETUSER alice on >pw ~foo* %R~bar* -@all +@string -set
ACL LIST
ACL GETUSER alice
ACL SETUSER bob
ACL SETUSER carol on nopass %W~w* %RW~rw* &chan resetchannels &c2 +@all -@dangerous
ACL USERS
ACL LIST
ACL GETUSER carol
ACL GETUSER nosuch
ACL SETUSER x foo
ACL SETUSER x +foo
ACL SETUSER x -@foo
ACL SETUSER x +config|
ACL SETUSER x +config|foo
ACL SETUSER x -config|foo
ACL SETUSER x +config|get|x
ACL SETUSER x -get|a
ACL SETUSER x #abc
ACL SETUSER x !abc
ACL SETUSER x <nope
ACL SETUSER x %X~a
ACL SETUSER x %~a
ACL SETUSER x %RWR~a
ACL SETUSER x %Ra
ACL SETUSER x allkeys ~a
ACL SETUSER x allchannels &a
ACL SETUSER x #CE5CA673D13B36118D54A7CF13AEB0CA012383BF771E713421B4D1FD841F539A
ACL SETUSER x !ce5ca673d13b36118d54a7cf13aeb0ca012383bf771e713421b4d1fd841f539a
ACL GETUSER x
ACL SETUSER x ~a allkeys >p1 >p2 >p1 <p2
ACL SETUSER x #ce5ca673d13b36118d54a7cf13aeb0ca012383bf771e713421b4d1fd841f539a
ACL GETUSER x
ACL SETUSER x resetkeys %R~ %R~* ~a %R~a %W~b %R~b resetpass nopass skip-sanitize-payload
ACL GETUSER x
ACL SETUSER x reset
ACL LIST
ACL SETUSER t1 reset +get +@string -get
ACL SETUSER t2 reset +config|get -config
ACL SETUSER t3 reset -config +config|get +config
ACL SETUSER t4 reset +select|0 -select
ACL SETUSER t5 +@all -@string +get
ACL SETUSER t6 +GET +@STRING -@String
ACL SETUSER t7 +@all -config|get -config|set +config
ACL SETUSER t8 +@all -@dangerous +@dangerous
ACL SETUSER t9 -@all +config|GET +config|get
ACL SETUSER t10 -@all +get|a +get|b +get
ACL SETUSER t11 allcommands -acl|whoami +acl|whoami
ACL SETUSER t12 nocommands +select|0 +select|1
ACL SETUSER t13 on off ON
ACL LIST
ACL DELUSER default
ACL DELUSER t1 t1 nosuch t2
ACL USERS
ACL CAT
ACL CAT nosuch
ACL CAT a b
ACL
ACL NOSUCH
ACL HELP
ACL USERS extra
ACL WHOAMI extra
ACL LIST extra
ACL GETUSER
ACL DELUSER
ACL SETUSER
ACL DRYRUN alice
ACL DRYRUN alice get
ACL DRYRUN nobody get x
ACL DRYRUN alice nosuch x
ACL DRYRUN alice config nosuch
ACL DRYRUN alice config get
ACL DRYRUN alice get foo1
ACL DRYRUN alice set foo1 x
ACL DRYRUN alice get zzz
ACL DRYRUN alice get bar1
ACL DRYRUN alice append bar1 x
ACL DRYRUN t12 select 0
ACL DRYRUN t12 select 2
ACL DRYRUN t10 get k
ACL GENPASS 0
ACL GENPASS 4097
ACL GENPASS abc
ACL SAVE
ACL LOAD
"""


def test_acl_replies_are_redis_replies(both: Both) -> None:
    for line in REPLIES.strip().splitlines():
        both.same(line)
    theirs, ours = (conn.command(words("ACL GENPASS 10")) for conn in both.admin)
    assert re.fullmatch(rb"\$3\r\n[0-9a-f]{3}\r\n", ours) and len(ours) == len(theirs)
    assert ours != both.admin[1].command(words("ACL GENPASS 10"))  # random each time


def test_auth_and_hello_are_redis_replies(both: Both) -> None:
    both.same("ACL SETUSER alice on >pw -@all +@connection +get ~k*")
    both.same("ACL SETUSER bob off >pw +@all ~*")
    user = both.conns()
    for line in (
        "AUTH pw",  # the default user has no password
        "AUTH alice wrong",
        "AUTH nobody pw",
        "AUTH bob pw",  # off
        "AUTH a b c",
        "ACL WHOAMI",
        "AUTH alice pw",
        "ACL WHOAMI",
        "GET k1",
        "GET x",
        "SET k1 v",
        "CLIENT SETNAME n",
        "HELLO 3 AUTH alice wrong",
        "HELLO 2 AUTH alice",
        "AUTH default anything",  # nopass: any password
        "ACL WHOAMI",
        "RESET",
        "ACL WHOAMI",
    ):
        both.same(line, user)
    both.same("ACL SETUSER default resetpass >sekret")
    fresh = both.conns()
    for line in (
        "GET x",
        "HELLO 3",
        "ACL WHOAMI",
        "AUTH wrong",
        "AUTH sekret",
        "ACL WHOAMI",
        "RESET",
        "GET x",
        "HELLO 2 AUTH alice pw SETNAME me",
        "ACL WHOAMI",
    ):
        both.same(line, fresh)
    # Pipelined after AUTH, a command runs as the new user.
    replies = []
    for conn in both.conns():
        pipelined = (encode_command(words(c)) for c in ("AUTH alice pw", "PING"))
        conn.sock.sendall(b"".join(pipelined))  # PING before AUTH is done: -NOAUTH
        replies.append(read_until(conn, b"PONG\r\n"))
    assert replies[0] == replies[1] == b"+OK\r\n+PONG\r\n"
    # A connection that was authenticated before the default user got a password stays so.
    both.same("GET x")
    both.same("CLIENT KILL USER nosuch")
    both.same("CLIENT KILL USER alice")  # the connection authenticated as alice just above
    both.same("CLIENT KILL USER alice")
    both.same("ACL SETUSER default nopass")


def argv_for(name: str, filler: bytes) -> list[bytes]:
    """A command with the right number of words, each argument ``filler``."""
    parent, _, sub = name.partition("|")
    spec = COMMANDS[parent.encode()]
    if sub:
        spec = SUBCOMMANDS[parent.encode()][sub.encode()]
    head = [w.encode() for w in name.split("|")]
    need = abs(spec.arity) - len(head)
    if spec.step == 2:  # MSET-like: key value pairs
        need += need % 2 == 0 and spec.arity < 0
    return head + [filler] * max(need, 0)


def every_command() -> list[str]:
    names = []
    for raw, spec in COMMANDS.items():
        if raw in (b"cas", b"paxos"):  # pyxos's own commands: Redis has neither
            continue
        names.append(spec.name)
        names.extend(s.name for s in spec.subcommands)
    return names


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_allows_and_denies_what_redis_does(both2: Both, category: str) -> None:
    both = both2
    both.same(f"ACL SETUSER only on nopass ~* -@all +@{category}")
    both.same(f"ACL SETUSER but on nopass ~* +@all -@{category}")
    for name in every_command():
        for user in (b"only", b"but"):
            both.same([b"ACL", b"DRYRUN", user, *argv_for(name, b"1")])


KEY_USERS = [
    "~foo*",
    "%R~foo*",
    "%W~foo*",
    "%R~foo* %W~bar*",
    "~foo* %R~bar*",
    "%RW~foo? %R~b[ae]r*",
    "resetkeys",
    "%R~*",
    "%W~*",
]


@pytest.mark.parametrize("keys", KEY_USERS)
def test_key_patterns_allow_and_deny_what_redis_does(both2: Both, keys: str) -> None:
    both = both2
    both.same(f"ACL SETUSER keyed on nopass +@all {keys}")
    for name in every_command():
        for filler in (b"foo1", b"bar1", b"zzz"):
            both.same([b"ACL", b"DRYRUN", b"keyed", *argv_for(name, filler)])
    for line in (
        "MSET foo1 a bar1 b",
        "EVAL return 1 2 foo1 bar1",
        "RENAME foo1 bar1",
        "COPY foo1 bar1",
        "GETDEL foo1",
        "EXISTS foo1 zzz",
    ):
        both.same(f"ACL DRYRUN keyed {line}")


def test_denied_commands_get_redis_noperm_errors(both: Both) -> None:
    both.same("MSET foo1 a bar1 b zzz c")
    both.same("ACL SETUSER app on >pw ~foo* %R~bar* -@all +@read +@string -getdel +@connection")
    both.same("ACL SETUSER app +config|get +select|0 +multi +exec +discard")
    app = both.conns()
    for line in (
        "AUTH app pw",
        "GET foo1",
        "GET bar1",
        "GET zzz",
        "SET foo1 x",
        "SET bar1 x",
        "APPEND bar1 x",
        "MGET foo1 bar1",
        "MGET foo1 zzz",
        "GETDEL foo1",
        "DEL foo1",
        "FLUSHALL",
        "DBSIZE",
        "CONFIG GET maxclients",
        "CONFIG SET maxclients 100",
        "SELECT 0",
        "SELECT 1",
        "ACL WHOAMI",
        "ACL LIST",
        "MULTI",
        "SET foo2 y",
        "SET zzz y",
        "EXEC",
        "MULTI",
        "GET foo1",
        "EXEC",
        "EVAL return 1 0",
        "PING",
    ):
        both.same(line, app)
