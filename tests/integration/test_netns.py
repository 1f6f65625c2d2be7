"""A cluster on real network addresses: each node in a network namespace of its own.

Three ``pyxos serve`` processes, each run with ``ip netns exec`` in its own namespace and
joined by veth pairs to one bridge (10.77.0.1..3/24; the test talks to them from the
bridge's 10.77.0.254), serve peers and clients on those addresses, not on 127.0.0.1.
Then node 3 is replaced by a node 4 in a fourth namespace at 10.77.0.4: ``PAXOS ADD``,
``serve --join``, wait until it votes, ``PAXOS REMOVE 3``; writes keep working and node 4
holds every one of them. Root only (namespaces, links); the namespaces and links are
removed even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

NET = "10.77.0"
CLIENT, PEER, ADMIN = 6379, 7380, 8080
FAST = ["--tick-ms", "10", "--election-ms", "150", "--heartbeat-ms", "30", "--log-level", "info"]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"pyxosprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.decode()}"


class Net:
    """Namespaces on one bridge; :meth:`close` removes all of them."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.bridge = f"pxb{tag}"
        self.prefix = f"px{tag}"
        self.spaces: dict[int, str] = {}
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{NET}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, k: int) -> str:
        ns, outside, inside = f"pyxos{self.prefix}n{k}", f"{self.prefix}h{k}", f"{self.prefix}c{k}"
        ip("netns", "add", ns)
        self.spaces[k] = ns
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("-n", ns, "addr", "add", f"{NET}.{k}/24", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def close(self) -> None:
        for k, ns in self.spaces.items():
            subprocess.run(
                ["ip", "link", "delete", f"{self.prefix}h{k}"], capture_output=True, check=False
            )
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)


class Nodes:
    """``pyxos serve`` processes, one per namespace; logs next to their data dirs."""

    def __init__(self, net: Net, root: Path) -> None:
        self.net, self.root = net, root
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, k: int, membership: list[str]) -> None:
        log = open(self.root / f"node{k}.log", "ab")  # noqa: SIM115 (the process keeps it)
        command = [
            "ip", "netns", "exec", self.net.spaces[k],
            sys.executable, "-m", "pyxos", "serve", "--id", str(k), *membership,
            "--host", f"{NET}.{k}", "--port", str(CLIENT),
            "--admin-host", f"{NET}.{k}", "--admin", str(ADMIN),
            "--data-dir", str(self.root / f"node{k}"), *FAST,
        ]  # fmt: skip
        self.procs[k] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self, k: int) -> str:
        return (self.root / f"node{k}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def conn(k: int) -> redis.Redis:
    return redis.Redis(host=f"{NET}.{k}", port=CLIENT, socket_timeout=5)


def until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def roles(k: int) -> dict[int, str]:
    rows = conn(k).execute_command("PAXOS", "MEMBERS")
    out = {}
    for raw in rows:
        row = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=True))
        out[int(row[b"id"])] = row[b"role"].decode()
    return out


@pytest.fixture
def net() -> Iterator[Net]:
    made = Net()
    try:
        yield made
    finally:
        made.close()


def test_three_namespaces_then_node_3_replaced_by_node_4(net: Net, tmp_path: Path) -> None:
    nodes = Nodes(net, tmp_path)
    try:
        for k in (1, 2, 3):
            net.add(k)
        founding = ",".join(f"{k}={NET}.{k}:{PEER}" for k in (1, 2, 3))
        for k in (1, 2, 3):
            nodes.start(k, ["--cluster", founding])
        for k in (1, 2, 3):
            until(lambda k=k: conn(k).ping(), f"node {k} at {NET}.{k}:{CLIENT}")
        # A write through each node, read back through every node.
        for k in (1, 2, 3):
            until(lambda k=k: conn(k).set(f"a{k}", f"v{k}"), f"a write through node {k}")
        for k in (1, 2, 3):
            assert conn(k).mget(["a1", "a2", "a3"]) == [b"v1", b"v2", b"v3"]
        info = conn(1).info("paxos")
        assert str(info.get("leader_id", "")) in ("1", "2", "3"), info

        net.add(4)
        assert conn(1).execute_command("PAXOS", "ADD", "4", f"{NET}.4:{PEER}") is not None
        nodes.start(4, ["--join", f"{NET}.1:{PEER},{NET}.2:{PEER}", "--peer", f"{NET}.4:{PEER}"])
        until(lambda: roles(1).get(4) == "voter", "node 4 to vote", 60)
        conn(2).execute_command("PAXOS", "REMOVE", "3")
        until(lambda: nodes.procs[3].poll() is not None, "node 3 to stop after its removal")
        assert roles(1) == {1: "voter", 2: "voter", 4: "voter"}
        assert "remov" in nodes.log(3).lower()

        for i in range(50):
            until(lambda i=i: conn(1 + i % 2).set(f"b{i}", i), f"write b{i} after the change")
        four = conn(4)
        assert four.mget(["a1", "a2", "a3"]) == [b"v1", b"v2", b"v3"]
        assert four.mget([f"b{i}" for i in range(50)]) == [str(i).encode() for i in range(50)]
        until(lambda: four.set("c4", "through 4"), "a write through node 4")
        assert conn(1).get("c4") == b"through 4"
    except BaseException:
        for k in nodes.procs:
            print(f"--- node {k} log ---\n{nodes.log(k)}")
        raise
    finally:
        nodes.close()
