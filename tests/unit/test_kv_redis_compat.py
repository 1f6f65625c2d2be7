"""Differential tests against a real redis-server: same bytes in, same bytes out.

Skipped when ``redis-server`` is not installed; nothing else depends on it. The server
listens on a Unix socket in a temporary directory (no TCP port to collide with), and startup
is detected by reading its log from a pipe, not by sleeping.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxos.kv import CommandKind, KVStateMachine, classify, encode_request
from pyxos.kv.reply import ReplyDecodeError, decode_reply
from pyxos.server.resp import ProtocolError, RequestParser, encode_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]


class Redis:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = self.connect()

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)  # only ever reached if a test is about to fail
        sock.connect(self.path)
        return sock

    def command(self, argv: list[bytes]) -> bytes:
        self.sock.sendall(encode_command(argv))
        buf = b""
        while True:
            chunk = self.sock.recv(65536)
            assert chunk, "redis closed the connection"
            buf += chunk
            try:
                decode_reply(buf)
            except ReplyDecodeError:
                continue
            return buf

    def raw_until_close(self, data: bytes) -> bytes:
        sock = self.connect()
        try:
            sock.sendall(data)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
            return out
        finally:
            sock.close()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    tmp: Path = tmp_path_factory.mktemp("redis")
    path = str(tmp / "redis.sock")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
         "--dir", str(tmp), "--logfile", ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            # "Ready to accept connections" or, on a Unix socket only, "The server is now
            # ready to accept connections at <path>".
            if b"ready to accept connections" in line.lower():
                break
        else:
            pytest.skip("redis-server did not start")
        # Keep draining its log so that a full pipe can never block the server.
        drain = threading.Thread(target=proc.stdout.read, daemon=True)
        drain.start()
        client = Redis(path)
        yield client
        client.sock.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


KEYS = [b"a", b"b", b"n"]
VALUES = [b"", b"1", b"-1", b"x", b"9223372036854775807", b"-9223372036854775808", b"007", b"0"]
NAMES = [
    b"GET", b"SET", b"set", b"SETNX", b"GETSET", b"GETDEL", b"DEL", b"UNLINK", b"INCR",
    b"INCRBY", b"DECR", b"DECRBY", b"MSET", b"MSETNX", b"MGET", b"APPEND", b"EXISTS",
    b"STRLEN", b"DBSIZE", b"TYPE", b"TTL", b"PTTL", b"FLUSHDB", b"NOPE", b"incrbyx",
]  # fmt: skip
# No EX/PX (pyxos refuses them on purpose) and no CAS (not a Redis command).
OPTIONS = [b"NX", b"XX", b"GET", b"KEEPTTL", b"nx", b"ASYNC", b"SYNC", b"bogus"]
argvs = st.tuples(
    st.sampled_from(NAMES),
    st.lists(
        st.one_of(st.sampled_from(KEYS), st.sampled_from(VALUES), st.sampled_from(OPTIONS)),
        max_size=5,
    ),
).map(lambda t: [t[0], *t[1]])


def ours(sm: KVStateMachine, argv: list[bytes]) -> bytes:
    checked = classify(argv)
    through_log = sm.apply(encode_request(argv))
    if checked.kind is CommandKind.INVALID:
        assert checked.error == through_log
    elif checked.kind is CommandKind.READ:
        assert sm.read(argv) == through_log
    return through_log


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(argvs, max_size=25))
def test_same_replies_as_redis(redis: Redis, commands: list[list[bytes]]) -> None:
    assert redis.command([b"FLUSHALL"]) == b"+OK\r\n"
    sm = KVStateMachine()
    for argv in commands:
        assert ours(sm, argv) == redis.command(argv), argv


def _ours_raw(data: bytes) -> bytes:
    """What a pyxos server would send for a stream of PING/ECHO commands."""
    parser = RequestParser()
    out = b""
    try:
        commands = parser.feed(data)
        error = None
    except ProtocolError as exc:
        commands, error = exc.commands, exc
    for argv in commands:
        assert argv[0].lower() == b"ping"
        out += b"+PONG\r\n" if len(argv) == 1 else encode_command(argv[1:2])[4:]
    assert error is not None, "every case must end in a protocol error"
    return out + error.reply


@pytest.mark.parametrize(
    "data",
    [
        b"*x\r\n",
        b"*-1\r\nPING\r\n*0\r\n*1\r\n+PING\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$-1\r\n",
        b"*01\r\n",
        b"*1\r\n$4\r\nPINGxxPING\r\n*1\r\n:1\r\n",
        b"*1\rX$4\r\nPING\r\n*2147483648\r\n",
        b"*1\r\n$536870913\r\n",
        b"*1\r\n\r\n",
        b'PING "a b"\r\nPING "a\r\n',
        b"PING 'it\\'s'\r\nPING 'a'b\r\n",
        b'PING "\\x41\\x4g\\n"\r\n  \r\n\r\nPING\nPING\rx\r\n*1\r\n$-0\r\n',
        b"PING a\x0bb\r\n*1\r\n$x\r\n",
        b"x" * (64 * 1024 + 1),
        b"*" + b"1" * 70000,
        b"*1\r\n$" + b"1" * 70000,
    ],
)
def test_same_protocol_errors_as_redis(redis: Redis, data: bytes) -> None:
    assert _ours_raw(data) == redis.raw_until_close(data)
