"""A cluster of real ``pyxos serve`` processes on this machine.

Used by ``pyxos cluster``, ``pyxos demo``, the integration tests and the chaos tester:
one place that knows the port layout and how to start, kill, pause and restart nodes.
Node ``k`` (from 1) serves clients on ``base_port + k - 1``, peers on ``base_port + 1000 +
k - 1`` and admin HTTP on ``base_port + 2000 + k - 1``; with TLS (``tls_dir``), TLS clients
on ``base_port + 3000 + k - 1``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PEER_OFFSET = 1000
ADMIN_OFFSET = 2000
TLS_OFFSET = 3000


def ports_free(ports: list[int], host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on every port right now (with SO_REUSEADDR, as
    asyncio's servers bind: a port held only by TIME_WAIT connections counts as free)."""
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default if unknown).

    A listening port picked inside it can be taken, while its node is down, by some
    outgoing connection's local port, and the node then cannot restart on it.
    """
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _listen_range() -> tuple[int, int]:
    """Where local clusters put their listening ports: below the ephemeral range (or above
    it, when it starts too low to leave room)."""
    low, high = ephemeral_range()
    if low - 10000 >= 6000:
        return 10000, low
    return high + 1, 65535


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that are free right now, outside the ephemeral range."""
    start, stop = _listen_range()
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    chosen: list[int] = []
    for _ in range(50 * n + 1000):
        if len(chosen) == n:
            return chosen
        port = rng.randrange(start, stop)
        if port not in chosen and ports_free([port], host):
            chosen.append(port)
    raise RuntimeError(f"could not find {n} free ports in {start}..{stop}")


def find_base_port(nodes: int, step: int = 37) -> int:
    """A base port whose client, peer and admin ports are all free, outside the ephemeral
    range (for tests and local clusters)."""
    start, stop = _listen_range()
    span = TLS_OFFSET + nodes
    pid_offset = (os.getpid() * 7919) % max(1, stop - start - span)
    first = start + pid_offset
    bases: list[int] = [*range(first, stop - span, step), *range(start, first, step)]
    offsets = (0, PEER_OFFSET, ADMIN_OFFSET, TLS_OFFSET)
    for base in bases:
        wanted = [base + o + k for o in offsets for k in range(nodes)]
        if ports_free(wanted):
            return base
    raise RuntimeError("no free port range found")


@dataclass(slots=True)
class LocalCluster:
    """``nodes`` processes under ``data_dir``; nothing runs until :meth:`start`."""

    nodes: int
    base_port: int
    data_dir: Path
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    peer_ports: dict[tuple[int, int], int] | None = None
    """``(a, b) -> port``: where node a dials node b, when a fault-injecting proxy sits on
    that link; links not listed go straight to b's peer port."""
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[int, IO[bytes]] = field(default_factory=dict)
    tls_dir: Path | None = None
    """Files from ``pyxos certs`` (``ca.crt``, ``nodeK.crt``/``.key``, ``client.crt``/``.key``):
    peer links use mutual TLS, admin HTTP uses TLS, node k serves TLS clients on
    :meth:`tls_port`."""
    plain_port: bool = True
    """With ``tls_dir``: keep the plain-text client port too (``False``: ``--port 0``)."""
    moved: dict[int, int] = field(default_factory=dict)
    """Node -> the peer port it listens on now, for a node removed and added back at a new
    address (its client and admin ports stay)."""
    joined: set[int] = field(default_factory=set)
    """Nodes added to the running cluster: they start with ``--join`` (the other nodes'
    peer addresses) and ``--peer`` instead of ``--cluster``, and keep doing so on restart."""

    def client_port(self, node: int) -> int:
        return self.base_port + node - 1

    def listen_port(self, node: int) -> int:
        return self.moved.get(node, self.base_port + PEER_OFFSET + node - 1)

    def move(self, node: int, peer_port: int) -> None:
        """From now on ``node`` listens for peers on ``peer_port`` and starts with ``--join``
        (it was removed, and is added back at this address with an empty data dir)."""
        self.moved[node] = peer_port
        self.joined.add(node)

    def admin_port(self, node: int) -> int:
        return self.base_port + ADMIN_OFFSET + node - 1

    def tls_port(self, node: int) -> int:
        return self.base_port + TLS_OFFSET + node - 1

    def tls_args(self, node: int) -> list[str]:
        if self.tls_dir is None:
            return []
        d = self.tls_dir
        return [
            "--tls-port", str(self.tls_port(node)),
            "--tls-cert-file", str(d / f"node{node}.crt"),
            "--tls-key-file", str(d / f"node{node}.key"),
            "--tls-ca-cert-file", str(d / "ca.crt"),
            "--tls-cluster", "yes",
            "--admin-tls", "yes",
        ]  # fmt: skip

    def client_tls_context(self) -> ssl.SSLContext:
        """What a client of this cluster uses: the CA, and ``client.crt`` as its certificate."""
        assert self.tls_dir is not None
        ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        ctx.load_cert_chain(self.tls_dir / "client.crt", self.tls_dir / "client.key")
        return ctx

    @property
    def ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, self.client_port(k)) for k in self.ids]

    def cluster_spec(self, for_node: int) -> str:
        """``--cluster`` as node ``for_node`` sees it (its own real port, peers' dial ports)."""
        parts = []
        for k in self.ids:
            port = self.listen_port(k)
            if k != for_node and self.peer_ports is not None:
                port = self.peer_ports.get((for_node, k), port)
            parts.append(f"{k}={self.host}:{port}")
        return ",".join(parts)

    def membership_args(self, node: int) -> list[str]:
        """``--cluster`` for a founding member; ``--join``/``--peer`` for a node added later
        (the others' real peer ports: a joined node's links bypass any proxy)."""
        if node not in self.joined:
            return ["--cluster", self.cluster_spec(node)]
        others = ",".join(f"{self.host}:{self.listen_port(k)}" for k in self.ids if k != node)
        return ["--join", others, "--peer", f"{self.host}:{self.listen_port(node)}"]

    def command(self, node: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pyxos",
            "serve",
            "--id",
            str(node),
            *self.membership_args(node),
            "--port",
            str(self.client_port(node) if self.plain_port or self.tls_dir is None else 0),
            "--admin",
            str(self.admin_port(node)),
            "--data-dir",
            str(self.data_dir / f"node{node}"),
            *self.tls_args(node),
            *self.extra_args,
        ]

    def start(self, node: int | None = None) -> None:
        """Start one node (or every node not running)."""
        targets = [node] if node is not None else self.ids
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for k in targets:
            proc = self.procs.get(k)
            if proc is not None and proc.poll() is None:
                continue
            log = self.logs.get(k)
            if log is None:
                log = self.logs[k] = open(self.data_dir / f"node{k}.log", "ab")  # noqa: SIM115
            self.procs[k] = subprocess.Popen(
                self.command(k), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def running(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def signal(self, node: int, sig: signal.Signals) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def kill(self, node: int) -> None:
        """SIGKILL: the process gets no chance to flush or say goodbye."""
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, node: int | None = None, timeout: float = 10.0) -> None:
        """SIGTERM (resuming a paused process first), then SIGKILL if it lingers."""
        targets = [node] if node is not None else list(self.procs)
        for k in targets:
            self.signal(k, signal.SIGCONT)
            self.signal(k, signal.SIGTERM)
        for k in targets:
            proc = self.procs.get(k)
            if proc is None:
                continue
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()
        for log in self.logs.values():
            with contextlib.suppress(OSError):
                log.close()
        self.logs.clear()

    def wait_ready(self, node: int | None = None, timeout: float = 30.0) -> None:
        """Wait until the node(s) answer PING on the client port."""
        targets = [node] if node is not None else self.ids
        deadline = time.monotonic() + timeout
        tls_only = self.tls_dir is not None and not self.plain_port
        tls = self.client_tls_context() if tls_only else None
        for k in targets:
            port = self.tls_port(k) if tls_only else self.client_port(k)
            while not ping(self.host, port, tls=tls):
                proc = self.procs.get(k)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"node {k} exited with {proc.returncode}; see its log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {k} did not answer PING within {timeout}s")
                time.sleep(0.05)

    def log_text(self, node: int) -> str:
        path = self.data_dir / f"node{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def ping(host: str, port: int, timeout: float = 0.5, tls: ssl.SSLContext | None = None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if tls is None:
                return _ping(raw)
            with tls.wrap_socket(raw, server_hostname=host) as wrapped:
                return _ping(wrapped)
    except OSError:
        return False


def _ping(s: socket.socket) -> bool:
    s.sendall(b"PING\r\n")
    # A node that wants AUTH first is up too.
    return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
