"""A real redis-server and a one-node pyxos to compare with it, and a raw RESP connection.

The compatibility tests send the same bytes to both and compare the bytes that come back,
under RESP2 and RESP3. Both servers are started once per test module. redis-server listens
on a Unix socket in a temporary directory (no TCP port to collide with) and its start is
detected by reading its log from a pipe, not by sleeping; pyxos is a real ``pyxos serve``
process, found ready by the project's own helper.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pyxos.launch.local_cluster import LocalCluster, find_base_port
from pyxos.resp.replies import ReplyDecodeError, decode_reply
from pyxos.resp.requests import encode_command

HAVE_REDIS = shutil.which("redis-server") is not None
FAST = ["--tick-ms", "10", "--election-ms", "150", "--heartbeat-ms", "30"]


class Conn:
    """One RESP connection; ``protocol=3`` sends HELLO 3 first."""

    def __init__(self, address: str | tuple[str, int], protocol: int = 2) -> None:
        self.address = address
        self.sock = self._connect()
        if protocol == 3:
            self.command([b"HELLO", b"3"])

    def _connect(self) -> socket.socket:
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(10)  # only ever reached if a test is about to fail
        sock.connect(self.address)
        return sock

    def send(self, argv: Sequence[bytes]) -> None:
        self.sock.sendall(encode_command(argv))

    def read(self) -> bytes:
        """One whole reply, as raw bytes.

        A reply can be 512 MB (``SETBIT k 4294967295 1`` then ``GET k``, which the random
        command walks draw): decoding the buffer after every chunk made that quadratic and
        ran into the test timeout. The buffer is decoded again only once it has doubled,
        or when no more bytes come for 50 ms, so a reply costs O(size) to read.
        """
        buf = bytearray()
        next_try = 0
        while True:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            buf += chunk
            if len(buf) < next_try and select.select([self.sock], [], [], 0.05)[0]:
                continue
            try:
                decode_reply(bytes(buf))
            except ReplyDecodeError:
                next_try = 2 * len(buf)
                continue
            return bytes(buf)

    def command(self, argv: Sequence[bytes]) -> bytes:
        self.send(argv)
        return self.read()

    def silent(self, argv: Sequence[bytes], wait: float = 0.3) -> bytes:
        """Send a command whose reply should not come; whatever arrives in ``wait`` s."""
        self.send(argv)
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            return b""
        finally:
            self.sock.settimeout(10)

    def raw_until_close(self, data: bytes) -> bytes:
        sock = self._connect()
        try:
            sock.sendall(data)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
            return out
        finally:
            sock.close()

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def reference_redis(tmp: Path) -> Iterator[str]:
    """Run redis-server on a Unix socket; yields its path (skips the test without one)."""
    if not HAVE_REDIS:
        pytest.skip("redis-server not installed")
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
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def pyxos_node(tmp: Path) -> Iterator[tuple[str, int]]:
    """Run a one-node pyxos cluster (a real ``pyxos serve``); yields its client address."""
    cluster = LocalCluster(1, find_base_port(1), tmp, extra_args=FAST)
    cluster.start()
    try:
        cluster.wait_ready()
        yield ("127.0.0.1", cluster.client_port(1))
    finally:
        cluster.close()
        text = cluster.log_text(1)
        if "Traceback" in text:
            print(f"--- pyxos log ---\n{text[-5000:]}")
