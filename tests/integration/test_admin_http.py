"""The admin HTTP port of real nodes: /metrics, /status, /health, and bad requests."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from procs import FAST, client, converged, leader, wait_until
from prometheus_client.parser import text_string_to_metric_families

from pyxos.launch.local_cluster import LocalCluster, find_base_port

pytestmark = pytest.mark.integration

WRITES = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-node cluster shared by this module's tests (none of them stops a node)."""
    c = LocalCluster(
        3, find_base_port(3), tmp_path_factory.mktemp("admin") / "c", extra_args=list(FAST)
    )
    c.start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()
        for k in c.ids:
            text = c.log_text(k)
            if "Traceback" in text:
                print(f"--- node {k} log ---\n{text[-5000:]}")


@pytest.fixture(scope="module")
def loaded(cluster: LocalCluster) -> int:
    """Writes, reads and one bad command through node 1; returns the leader's id."""
    lid = leader(cluster)
    r = client(cluster, 1)
    for i in range(WRITES):
        assert r.set(f"admin-{i}", str(i)) is True
    assert r.get("admin-7") == b"7"
    with pytest.raises(Exception, match="unknown command"):
        r.execute_command("NOSUCHCOMMAND")
    converged(cluster, cluster.ids)
    return lid


def request(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send ``raw`` as is, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def http(
    port: int, path: str, method: str = "GET", extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    raw = request(port, f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode())
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response: {raw!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, code, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body) or method == "HEAD"
    return int(code), headers, body


def status_json(cluster: LocalCluster, node: int) -> dict[str, Any]:
    code, headers, body = http(cluster.admin_port(node), "/status")
    assert code == 200
    assert headers["content-type"] == "application/json"
    data: dict[str, Any] = json.loads(body)
    return data


def metrics(cluster: LocalCluster, node: int) -> dict[str, dict[tuple[str, ...], float]]:
    """``{sample name: {label values: value}}`` from a real scrape, via the official parser."""
    code, headers, body = http(cluster.admin_port(node), "/metrics")
    assert code == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def value(m: dict[str, dict[tuple[str, ...], float]], name: str, *labels: str) -> float:
    return m[name][tuple(labels)]


# --- /metrics -------------------------------------------------------------------------------


EXPECTED_SAMPLES = [
    "pyxos_proposals_total",
    "pyxos_commands_applied_total",
    "pyxos_slots_applied_total",
    "pyxos_linearizable_reads_total",
    "pyxos_leader_changes_total",
    "pyxos_elections_won_total",
    "pyxos_snapshots_total",
    "pyxos_fsync_seconds_bucket",
    "pyxos_fsync_seconds_count",
    "pyxos_fsync_seconds_sum",
    "pyxos_batch_entries_bucket",
    "pyxos_batch_entries_count",
    "pyxos_batch_entries_sum",
    "pyxos_client_ops_total",
    "pyxos_commit_index",
    "pyxos_applied_index",
    "pyxos_ballot_round",
    "pyxos_is_leader",
    "pyxos_peer_connected",
    "pyxos_peer_last_contact_seconds",
]


def test_metrics_parse_and_count_what_happened(cluster: LocalCluster, loaded: int) -> None:
    scrapes = {k: metrics(cluster, k) for k in cluster.ids}
    for k, m in scrapes.items():
        missing = [name for name in EXPECTED_SAMPLES if name not in m]
        assert not missing, f"node {k} /metrics lacks {missing}"
        # Every replica wrote, fsynced and applied the writes.
        assert value(m, "pyxos_commands_applied_total") >= WRITES
        assert value(m, "pyxos_slots_applied_total") >= 1
        assert value(m, "pyxos_commit_index") >= WRITES
        assert value(m, "pyxos_applied_index") >= WRITES
        assert value(m, "pyxos_fsync_seconds_count") >= 1
        assert value(m, "pyxos_fsync_seconds_sum") > 0
        assert value(m, "pyxos_fsync_seconds_bucket", "le=+Inf") == value(
            m, "pyxos_fsync_seconds_count"
        )
        assert value(m, "pyxos_batch_entries_sum") >= WRITES  # log entries in synced batches
        assert value(m, "pyxos_is_leader") == (1 if k == loaded else 0)
        peers = {str(p) for p in cluster.ids if p != k}
        assert {lbl[0] for lbl in m["pyxos_peer_connected"]} == {f"peer={p}" for p in peers}
        # Links are dialled when there is something to send: the leader talks to everyone,
        # a follower to the leader (followers may never talk to each other).
        talks_to = peers if k == loaded else {str(loaded)}
        for p in talks_to:
            assert value(m, "pyxos_peer_connected", f"peer={p}") == 1
            assert 0 <= value(m, "pyxos_peer_last_contact_seconds", f"peer={p}") < 5
    # Node 1 took the client traffic.
    m1 = scrapes[1]
    assert value(m1, "pyxos_proposals_total") >= WRITES
    assert value(m1, "pyxos_client_ops_total", "kind=write") >= WRITES
    assert value(m1, "pyxos_client_ops_total", "kind=read") >= 1
    assert value(m1, "pyxos_client_errors_total", "kind=invalid") >= 1
    assert value(m1, "pyxos_linearizable_reads_total") >= 1
    assert sum(value(m, "pyxos_is_leader") for m in scrapes.values()) == 1


def test_election_metrics_count_the_election(cluster: LocalCluster, loaded: int) -> None:
    scrapes = {k: metrics(cluster, k) for k in cluster.ids}
    won = value(scrapes[loaded], "pyxos_elections_won_total")
    # Also when phase 1 completes inside Replica.advance() (our own promise synced last).
    assert won >= 1
    assert f"node {loaded} leads with" in cluster.log_text(loaded)
    for k, m in scrapes.items():
        assert value(m, "pyxos_leader_changes_total") >= 1, f"node {k}"


def test_metric_gauges_follow_the_node_without_a_scrape_in_between(
    cluster: LocalCluster, loaded: int
) -> None:
    before = metrics(cluster, 2)
    r = client(cluster, 2)
    for i in range(5):
        assert r.incr("gauge-counter") == i + 1
    converged(cluster, cluster.ids)
    after = metrics(cluster, 2)
    status = status_json(cluster, 2)
    assert value(after, "pyxos_commit_index") >= value(before, "pyxos_commit_index") + 5
    assert value(after, "pyxos_commit_index") == status["commit_index"]
    assert value(after, "pyxos_applied_index") == status["applied_index"]
    assert value(after, "pyxos_ballot_round") == int(status["ballot"].split(":")[0])
    assert value(after, "pyxos_client_ops_total", "kind=write") >= 5


# --- /status and /health --------------------------------------------------------------------


def test_status_reports_role_leader_indexes_and_peers(cluster: LocalCluster, loaded: int) -> None:
    rows = {k: status_json(cluster, k) for k in cluster.ids}
    for k, st in rows.items():
        assert st["node_id"] == k
        assert st["role"] == ("leader" if k == loaded else "follower")
        assert st["leader_id"] == loaded
        assert isinstance(st["ballot"], str) and st["ballot"].endswith(f":{loaded}")
        assert st["commit_index"] >= st["applied_index"] >= WRITES
        assert st["failed"] is None
        assert set(st["peers"]) == {str(p) for p in cluster.ids if p != k}
        for pid, peer in st["peers"].items():
            assert peer["address"] == f"127.0.0.1:{cluster.listen_port(int(pid))}"
            assert isinstance(peer["connected"], bool)
            last = peer["last_contact_seconds"]
            assert last is None or (isinstance(last, float | int) and last >= 0)
            if k == loaded or int(pid) == loaded:
                # Leader <-> follower: heartbeats flow every 30 ms, so contact is recent.
                assert peer["connected"] is True
                assert last is not None and last < 5
    assert len({st["ballot"] for st in rows.values()}) == 1


def test_health_head_query_strings_404_and_405(cluster: LocalCluster, loaded: int) -> None:
    port = cluster.admin_port(3)
    code, headers, body = http(port, "/health")
    assert code == 200
    assert headers["content-type"] == "application/json"
    role = "leader" if loaded == 3 else "follower"
    assert json.loads(body) == {"ok": True, "role": role, "leader_id": loaded}
    code, headers, body = http(port, "/health", method="HEAD")
    assert code == 200 and body == b"" and int(headers["content-length"]) > 0
    code, _, body = http(port, "/status?pretty=1")
    assert code == 200 and json.loads(body)["node_id"] == 3
    for path in ("/", "/nope", "/metricsx", "/status/", "/../etc/passwd"):
        code, _, body = http(port, path)
        assert code == 404, path
        assert b"/metrics" in body
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        code, headers, _ = http(port, "/metrics", method=method, extra="Content-Length: 0\r\n")
        assert code == 405, method
        assert headers["allow"] == "GET, HEAD"


# --- bad input on the admin port ------------------------------------------------------------


def still_serving(cluster: LocalCluster, node: int, tag: str) -> None:
    code, _, body = http(cluster.admin_port(node), "/health")
    assert code == 200 and json.loads(body)["ok"] is True
    r = client(cluster, node)
    assert r.set(f"admin-alive-{tag}", tag) is True
    assert client(cluster, node).get(f"admin-alive-{tag}") == tag.encode()


def test_garbage_on_the_admin_port_gets_400_or_a_closed_connection(
    cluster: LocalCluster, loaded: int
) -> None:
    node = 2
    port = cluster.admin_port(node)
    # A client that connects and says nothing must not block anyone else.
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle_since = time.monotonic()
    try:
        still_serving(cluster, node, "idle")
        cases: list[tuple[bytes, set[int | None]]] = [
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n", {400}),
            (b"GET\r\n\r\n", {400}),
            (b"GET / SMTP/1.0\r\n\r\n", {400}),
            (b"\r\n\r\n", {400}),
            (b"GET /metrics HTTP/1.1 extra\r\n\r\n", {400}),
            (b"\x00" * 100 + b"\r\n\r\n", {400}),
            (b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", {431}),
            # No blank line within the reader's limit: refused (or cut off) without buffering.
            (b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 200_000, {431, None}),
            (os.urandom(300).replace(b"\r\n\r\n", b""), {None}),  # then EOF: just closed
            (b"GET /status HTTP/1.1\r\nHost: x\r\n", {None}),  # truncated head, then EOF
        ]
        for i, (payload, allowed) in enumerate(cases):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the node may answer and hang up before reading all of it
                reply = b""
                try:
                    while chunk := s.recv(65536):
                        reply += chunk
                except ConnectionResetError:
                    pass
            code = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
            assert reply == b"" or code is not None, f"case {i}: not HTTP: {reply[:80]!r}"
            assert code in allowed, f"case {i}: {payload[:40]!r} got {reply[:80]!r}"
            still_serving(cluster, node, str(i))
        # The silent client is disconnected after the read timeout (5 s), not kept forever.
        assert idle.recv(1) == b""
        assert time.monotonic() - idle_since < 9
    finally:
        idle.close()
    log = cluster.log_text(node)
    assert "Traceback" not in log
    assert "admin request failed" not in log
    assert cluster.running(node)
    converged(cluster, cluster.ids)


def test_many_concurrent_admin_connections(cluster: LocalCluster, loaded: int) -> None:
    port = cluster.admin_port(1)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
    try:
        for s in socks:
            s.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        for s in socks:
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: http(port, "/health")[0] == 200, what="admin port answering")
