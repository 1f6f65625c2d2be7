"""Bad input and limits on the client (Redis protocol) port of real nodes.

Every case talks to a real ``pyxos serve`` process over a raw socket, then checks that the
node still serves (a write and a read through other connections) and, at the end, that the
replicas converged on the same state digest: bad input gets an error, never a crash and
never a change to the data.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import FAST, client, converged, leader, wait_until

from pyxos.launch.local_cluster import LocalCluster, find_base_port

pytestmark = pytest.mark.integration

MAX_BULK = 64 * 1024 * 1024  # ServerLimits.max_bulk_len
MAX_ARGS = 1024 * 1024  # ServerLimits.max_args
NODE = 1  # the node under attack; node 2 and 3 check that the data reached them


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-node cluster shared by the tests of this module, checked at the end."""
    c = LocalCluster(
        3, find_base_port(3), tmp_path_factory.mktemp("badinput") / "c", extra_args=list(FAST)
    )
    c.start()
    try:
        c.wait_ready()
        leader(c)
        client(c, NODE).set("sentinel", "untouched")
        yield c
        # Whatever was thrown at the node, it is alive and nothing was corrupted.
        assert all(c.running(k) for k in c.ids)
        converged(c, c.ids)
        for k in c.ids:
            assert client(c, k).get("sentinel") == b"untouched"
            log = c.log_text(k)
            assert "Traceback" not in log, log[-3000:]
            assert "client connection failed" not in log
    finally:
        c.close()


def connect(cluster: LocalCluster, node: int = NODE, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", cluster.client_port(node)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def read_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def read_until_closed_or(s: socket.socket, n: int) -> bytes:
    """Up to ``n`` bytes, or fewer if the server closes first."""
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def send_and_close(cluster: LocalCluster, payload: bytes) -> bytes:
    """Send ``payload`` on a fresh connection, half-close it, return every reply."""
    with connect(cluster) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_until_closed(s)


def exchange_until_closed(cluster: LocalCluster, payload: bytes) -> bytes:
    """Send ``payload`` and keep the connection open: the server must close it itself."""
    with connect(cluster) as s:
        s.sendall(payload)
        return read_until_closed(s)


_serial = iter(range(1_000_000))


def still_serves(cluster: LocalCluster, node: int = NODE) -> None:
    """A real write through ``node`` on a new connection, read back from another node."""
    tag = f"alive-{next(_serial)}"
    assert client(cluster, node).set(tag, tag) is True
    other = 2 if node != 2 else 3
    assert client(cluster, other).get(tag) == tag.encode()


def rss_kib(cluster: LocalCluster, node: int) -> int:
    with open(f"/proc/{cluster.procs[node].pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def parse_replies(data: bytes) -> list[object]:
    """Split a reply stream with hiredis; fails if it is not well-formed RESP."""
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (reply := reader.gets()) is not False:
        out.append(reply)
    assert not reader.has_data(), f"trailing partial reply in {data[-80:]!r}"
    return out


# --- garbage ---------------------------------------------------------------------------------

_resp_noise = st.lists(
    st.sampled_from(
        [b"*", b"$", b"\r\n", b"\r", b"\n", b"-1", b"0", b"3", b"99999999999", b"SET", b"GET",
         b'"', b"'", b"\\x", b"\x00", b" ", b"PING", b":", b"+", b"%"]
    ),
    max_size=40,
).map(b"".join)  # fmt: skip


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(payload=st.one_of(st.binary(min_size=1, max_size=2048), _resp_noise))
def test_random_bytes_get_errors_or_replies_never_a_crash(
    cluster: LocalCluster, payload: bytes
) -> None:
    reply = send_and_close(cluster, payload)
    parse_replies(reply)  # whatever came back is well-formed RESP
    still_serves(cluster)


# --- protocol errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\nfoo\r\n", b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        (b'SET k "unbalanced\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"x" * 70_000, b"-ERR Protocol error: too big inline request\r\n"),
        (b"*1\r\n$" + b"9" * 70_000, b"-ERR Protocol error: too big bulk count string\r\n"),
        (b"*" + b"1" * 70_000, b"-ERR Protocol error: too big mbulk count string\r\n"),
    ],
)
def test_protocol_error_is_answered_and_the_connection_closed(
    cluster: LocalCluster, payload: bytes, error: bytes
) -> None:
    # The server replies and hangs up by itself: we do not close our side.
    assert exchange_until_closed(cluster, payload) == error
    still_serves(cluster)


def test_commands_before_a_protocol_error_run_and_those_after_do_not(
    cluster: LocalCluster,
) -> None:
    payload = b"SET pe-before 1\r\n*1\r\n$abc\r\nSET pe-after 1\r\n"
    assert exchange_until_closed(cluster, payload) == (
        b"+OK\r\n-ERR Protocol error: invalid bulk length\r\n"
    )
    assert client(cluster, 3).get("pe-before") == b"1"
    assert client(cluster, 3).exists("pe-after") == 0
    still_serves(cluster)


# --- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [MAX_BULK + 1, 10**12, 2**63 - 1, 2**64])
def test_bulk_over_the_limit_is_refused_before_it_is_read(
    cluster: LocalCluster, length: int
) -> None:
    rss_before = rss_kib(cluster, NODE)
    with connect(cluster, timeout=5) as s:
        # Only the header: a server waiting for (or buffering) the payload would time out.
        s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % length)
        s.sendall(b"x" * 65536)  # the start of the payload, as a client would stream it
        assert read_until_closed(s) == b"-ERR Protocol error: invalid bulk length\r\n"
    assert rss_kib(cluster, NODE) - rss_before < 32 * 1024  # nothing near the claimed size
    assert client(cluster, 2).exists("big") == 0
    still_serves(cluster)


@pytest.mark.parametrize("count", [MAX_ARGS + 1, 2**31, 99_999_999_999, 2**64])
def test_argument_count_over_the_limit_is_refused(cluster: LocalCluster, count: int) -> None:
    rss_before = rss_kib(cluster, NODE)
    assert exchange_until_closed(cluster, b"*%d\r\n$3\r\nDEL\r\n" % count) == (
        b"-ERR Protocol error: invalid multibulk length\r\n"
    )
    assert rss_kib(cluster, NODE) - rss_before < 32 * 1024
    still_serves(cluster)


def test_many_arguments_within_the_limit_work(cluster: LocalCluster) -> None:
    pairs = 5000
    argv = [b"MSET"]
    for i in range(pairs):
        argv += [b"many-%d" % i, b"%d" % i]
    payload = b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)
    with connect(cluster) as s:
        s.sendall(payload)
        assert read_exactly(s, 5) == b"+OK\r\n"
    assert client(cluster, 3).get(f"many-{pairs - 1}") == str(pairs - 1).encode()
    still_serves(cluster)


def test_a_large_value_within_the_limit_replicates(cluster: LocalCluster) -> None:
    value = os.urandom(3 * 1024 * 1024)  # several transport chunks
    assert client(cluster, NODE).set("large", value) is True
    assert client(cluster, 3).get("large") == value
    assert client(cluster, NODE).delete("large") == 1
    still_serves(cluster)


# --- awkward but valid framing ---------------------------------------------------------------


def test_a_request_sent_one_byte_at_a_time_works(cluster: LocalCluster) -> None:
    with connect(cluster) as s:
        for req in (
            b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$5\r\nvalue\r\n",
            b"*2\r\n$3\r\nGET\r\n$4\r\nslow\r\n",
            b"GET slow\r\n",  # inline form too
        ):
            for i in range(len(req)):
                s.send(req[i : i + 1])
        expected = b"+OK\r\n$5\r\nvalue\r\n$5\r\nvalue\r\n"
        assert read_exactly(s, len(expected)) == expected
    still_serves(cluster)


def test_200_pipelined_commands_in_one_write_get_200_replies_in_order(
    cluster: LocalCluster,
) -> None:
    requests = []
    expected = []
    for i in range(100):
        v = b"v%d" % i
        requests.append(b"*3\r\n$3\r\nSET\r\n$2\r\npk\r\n$%d\r\n%s\r\n" % (len(v), v))
        requests.append(b"*2\r\n$3\r\nGET\r\n$2\r\npk\r\n")
        expected += [b"+OK\r\n", b"$%d\r\n%s\r\n" % (len(v), v)]
    with connect(cluster) as s:
        s.sendall(b"".join(requests))
        want = b"".join(expected)
        got = read_exactly(s, len(want))
    assert len(parse_replies(got)) == 200
    assert got == want
    assert client(cluster, 2).get("pk") == b"v99"
    still_serves(cluster)


# --- errors that keep the connection open -----------------------------------------------------


def test_unknown_commands_wrong_arity_and_wrong_types_get_redis_errors(
    cluster: LocalCluster,
) -> None:
    client(cluster, NODE).set("notanumber", "abc")
    cases = [
        (b"FOO bar baz\r\n", b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' "),
        (b"foo\r\n", b"-ERR unknown command 'foo', with args beginning with: "),
        (b"GET\r\n", b"-ERR wrong number of arguments for 'get' command"),
        (b"SET k\r\n", b"-ERR wrong number of arguments for 'set' command"),
        (b"MSET a 1 b\r\n", b"-ERR wrong number of arguments for 'mset' command"),
        (b"PING a b\r\n", b"-ERR wrong number of arguments for 'ping' command"),
        (b"INCR notanumber\r\n", b"-ERR value is not an integer or out of range"),
        (b"INCRBY counter abc\r\n", b"-ERR value is not an integer or out of range"),
        (b"SET k v NX XX\r\n", b"-ERR syntax error"),
        (b"SELECT 16\r\n", b"-ERR DB index is out of range"),
        (b"HELLO 4\r\n", b"-NOPROTO unsupported protocol version"),
        (b"SET k v EX 0\r\n", b"-ERR invalid expire time in 'set' command"),
    ]
    with connect(cluster) as s:
        for request, error in cases:
            s.sendall(request)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                assert chunk, f"connection closed after {request!r}"
                reply += chunk
            assert reply.startswith(error), (request, reply)
            assert reply.count(b"\r\n") == 1
        s.sendall(b"PING\r\n")  # still the same, open connection
        assert read_exactly(s, 7) == b"+PONG\r\n"
    assert client(cluster, 2).get("notanumber") == b"abc"
    assert client(cluster, 2).exists("k") == 0
    still_serves(cluster)


# --- max clients (set from a TOML config file) ------------------------------------------------


def test_connections_over_max_clients_are_refused_and_the_rest_keep_working(
    tmp_path: Path,
) -> None:
    config = tmp_path / "node.toml"
    config.write_text("# every node\nmax_clients = 5\nrequest_timeout = 5.0\n")
    cluster = LocalCluster(
        3, find_base_port(3), tmp_path / "c", extra_args=[*FAST, "--config", str(config)]
    )
    cluster.start()
    socks: list[socket.socket] = []
    try:
        cluster.wait_ready()
        leader(cluster)

        def connected_clients(s: socket.socket) -> int:
            s.sendall(b"INFO clients\r\n")
            head = b""
            while not head.endswith(b"\r\n"):
                head += s.recv(1)
            body = read_exactly(s, int(head[1:-2]) + 2).decode()
            return int(body.split("connected_clients:")[1].split()[0])

        # Wait until earlier probes (wait_ready, leader) have gone: only this one is left.
        first = connect(cluster)
        socks.append(first)
        wait_until(lambda: connected_clients(first) == 1, what="probe connections to close")
        for _ in range(4):
            s = connect(cluster)
            s.sendall(b"PING\r\n")
            assert read_exactly(s, 7) == b"+PONG\r\n"
            socks.append(s)
        assert connected_clients(first) == 5

        for _ in range(2):  # the sixth and seventh are refused with Redis's error
            with connect(cluster) as extra:
                extra.sendall(b"PING\r\n")
                assert read_until_closed(extra) == b"-ERR max number of clients reached\r\n"

        # The five admitted connections keep working, writes included.
        for i, s in enumerate(socks):
            s.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nmc-%d\r\n$2\r\nok\r\n" % i)
            assert read_exactly(s, 5) == b"+OK\r\n"
        assert client(cluster, 2).get("mc-4") == b"ok"  # other nodes have their own limit

        # Once one leaves, a newcomer gets its place.
        socks.pop().close()

        def newcomer_admitted() -> bool:
            with connect(cluster) as s:
                s.sendall(b"PING\r\n")
                return read_until_closed_or(s, 7) == b"+PONG\r\n"

        wait_until(newcomer_admitted, what="a freed client slot")
        for s in socks:
            s.close()
        converged(cluster, cluster.ids)
        assert "Traceback" not in cluster.log_text(NODE)
        assert cluster.running(NODE)
    finally:
        for s in socks:
            s.close()
        cluster.close()


def test_a_connection_flood_does_not_stop_the_node(cluster: LocalCluster) -> None:
    """Many clients that connect, send half a command and vanish."""
    started = time.monotonic()
    for i in range(200):
        with connect(cluster) as s:
            s.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nflood\r\n$100\r\n" + b"x" * (i % 50))
    assert time.monotonic() - started < 20
    assert client(cluster, 2).exists("flood") == 0
    still_serves(cluster)
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        client(cluster, NODE).execute_command("GET")
