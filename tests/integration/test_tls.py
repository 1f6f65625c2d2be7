"""TLS with real processes and real clients: redis-cli, redis-py and redis-benchmark over
TLS, clients on the wrong kind of port, the protected admin port, peers from a foreign CA,
and certificates replaced while the cluster serves.

Certificates are made at test time by ``pyxos certs`` code, never read from the repository.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from procs import FAST, client, info, leader, wait_until

from pyxos.certs import issue, make_ca, make_dev_certs, write_pair
from pyxos.launch.local_cluster import LocalCluster, find_base_port

pytestmark = pytest.mark.integration

TOKEN = "admin-token-0123456789"


def start(tmp: Path, tls_dir: Path, *extra: str) -> LocalCluster:
    cluster = LocalCluster(
        3, find_base_port(3), tmp / "c", extra_args=[*FAST, *extra], tls_dir=tls_dir
    )
    cluster.start()
    try:
        cluster.wait_ready()
    except BaseException:
        cluster.close()
        raise
    return cluster


def stop(cluster: LocalCluster) -> None:
    cluster.close()
    for k in cluster.ids:
        text = cluster.log_text(k)
        if "Traceback" in text:
            print(f"--- node {k} log ---\n{text[-5000:]}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out, dict.fromkeys((1, 2, 3), "127.0.0.1"))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[LocalCluster]:
    """Plain and TLS client ports, mutual TLS between nodes, TLS admin with a token."""
    c = start(tmp_path_factory.mktemp("tls"), certs, "--admin-token", TOKEN)
    try:
        leader(c)
        yield c
    finally:
        stop(c)


def tls_client(cluster: LocalCluster, node: int, certs: Path, **kw: object) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.tls_port(node),
        ssl=True,
        ssl_ca_certs=str(certs / "ca.crt"),
        ssl_certfile=str(certs / "client.crt"),
        ssl_keyfile=str(certs / "client.key"),
        socket_timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def cli(redis_cli: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [redis_cli, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def tls_flags(certs: Path, with_cert: bool = True) -> list[str]:
    flags = ["--tls", "--cacert", str(certs / "ca.crt")]
    if with_cert:
        flags += ["--cert", str(certs / "client.crt"), "--key", str(certs / "client.key")]
    return flags


def logged(cluster: LocalCluster, node: int, text: str) -> bool:
    return text in cluster.log_text(node)


# --- the client port --------------------------------------------------------------------------


def test_redis_cli_over_tls_through_every_node(
    cluster: LocalCluster, certs: Path, redis_cli: str
) -> None:
    for k in cluster.ids:
        port = str(cluster.tls_port(k))
        assert cli(redis_cli, *tls_flags(certs), "-p", port, "SET", f"cli{k}", f"v{k}").stdout == (
            "OK\n"
        )
    for k in cluster.ids:
        port = str(cluster.tls_port(k % 3 + 1))
        out = cli(redis_cli, *tls_flags(certs), "-p", port, "GET", f"cli{k}")
        assert out.stdout == f"v{k}\n", out
    out = cli(redis_cli, *tls_flags(certs), "-p", str(cluster.tls_port(2)), "INFO", "paxos")
    assert "node_id:2" in out.stdout


def test_redis_py_over_tls_resp2_resp3_and_pipelines(cluster: LocalCluster, certs: Path) -> None:
    r2 = tls_client(cluster, 2, certs)
    r3 = tls_client(cluster, 3, certs, protocol=3)
    assert r2.set("py", "a") is True and r3.get("py") == b"a"
    assert r3.incr("py-n") == 1 and r2.incrby("py-n", 41) == 42
    assert r3.execute_command("HELLO", "3")[b"proto"] == 3
    pipe = r2.pipeline(transaction=False)
    for _ in range(100):
        pipe.incr("py-pipe")
    assert pipe.execute() == list(range(1, 101))
    ssl_sock = r2.connection_pool.get_connection()._sock
    assert isinstance(ssl_sock, ssl.SSLSocket) and ssl_sock.version() in ("TLSv1.2", "TLSv1.3")
    # the same data through the plain port: one replicated state behind both
    assert client(cluster, 1).get("py") == b"a"


def test_redis_benchmark_over_tls(cluster: LocalCluster, certs: Path) -> None:
    bench = shutil.which("redis-benchmark")
    if bench is None:
        pytest.skip("redis-benchmark is not installed (make test installs redis-tools)")
    out = subprocess.run(
        [bench, *tls_flags(certs), "-h", "127.0.0.1", "-p", str(cluster.tls_port(leader(cluster))),
         "-t", "set,get", "-n", "2000", "-c", "8", "-r", "100", "--csv"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    rows = {line.split(",")[0].strip('"'): line for line in out.stdout.splitlines()}
    assert {"SET", "GET"} <= set(rows), out
    assert "error" not in out.stderr.lower(), out.stderr


def test_plain_text_client_on_the_tls_port_is_closed_and_logged(
    cluster: LocalCluster, certs: Path, redis_cli: str
) -> None:
    out = cli(redis_cli, "-p", str(cluster.tls_port(1)), "PING")
    assert "PONG" not in out.stdout
    wait_until(lambda: logged(cluster, 1, "plain-text client on a TLS port"), what="log line")
    assert cli(redis_cli, *tls_flags(certs), "-p", str(cluster.tls_port(1)), "PING").stdout == (
        "PONG\n"
    )


def test_tls_client_on_the_plain_port_is_closed_and_logged(
    cluster: LocalCluster, certs: Path, redis_cli: str
) -> None:
    out = cli(redis_cli, *tls_flags(certs), "-p", str(cluster.client_port(2)), "PING")
    assert "PONG" not in out.stdout
    wait_until(lambda: logged(cluster, 2, "a TLS handshake on the plain-text port"), what="log")
    assert client(cluster, 2).ping() is True


def test_client_certificate_is_required_by_default(
    cluster: LocalCluster, certs: Path, redis_cli: str, tmp_path: Path
) -> None:
    out = cli(redis_cli, *tls_flags(certs, with_cert=False), "-p", str(cluster.tls_port(3)), "PING")
    assert "PONG" not in out.stdout
    wait_until(lambda: logged(cluster, 3, "no client certificate presented"), what="log line")
    foreign = tmp_path / "foreign"
    make_dev_certs(foreign, {})
    out = cli(redis_cli, "--tls", "--cacert", str(certs / "ca.crt"), "--cert",
              str(foreign / "client.crt"), "--key", str(foreign / "client.key"),
              "-p", str(cluster.tls_port(3)), "PING")  # fmt: skip
    assert "PONG" not in out.stdout
    wait_until(lambda: logged(cluster, 3, "not signed by the cluster CA"), what="log line")


# --- the admin port ---------------------------------------------------------------------------


def https(
    cluster: LocalCluster, certs: Path, path: str, header: str = "", cert: bool = False
) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if cert:
        ctx.load_cert_chain(certs / "client.crt", certs / "client.key")
    with (
        socket.create_connection(("127.0.0.1", cluster.admin_port(1)), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head + "\r\n\r\n" + body


def test_admin_port_needs_a_token_or_a_certificate_beyond_health(
    cluster: LocalCluster, certs: Path
) -> None:
    assert https(cluster, certs, "/health")[0] == 200
    code, text = https(cluster, certs, "/status")
    assert code == 401 and 'WWW-Authenticate: Bearer realm="pyxos"' in text
    assert https(cluster, certs, "/metrics")[0] == 401
    assert https(cluster, certs, "/nosuchpath")[0] == 401  # no probing of paths either
    assert https(cluster, certs, "/status", "Authorization: Bearer wrong-token\r\n")[0] == 403
    code, text = https(cluster, certs, "/status", f"Authorization: Bearer {TOKEN}\r\n")
    assert code == 200 and '"node_id": 1' in text
    assert https(cluster, certs, "/metrics", cert=True)[0] == 200
    assert logged(cluster, 1, "refused (403): wrong bearer token")
    assert TOKEN not in cluster.log_text(1)
    # plain HTTP on the TLS admin port is refused at the handshake, and logged
    with socket.create_connection(("127.0.0.1", cluster.admin_port(1)), timeout=10) as s:
        s.sendall(b"GET /status HTTP/1.1\r\n\r\n")
        assert s.recv(100) == b""
    wait_until(lambda: logged(cluster, 1, "admin port refused a connection"), what="log line")


# --- peers ------------------------------------------------------------------------------------


def test_node_with_a_foreign_ca_certificate_is_kept_out(tmp_path: Path, certs: Path) -> None:
    foreign = tmp_path / "foreign"
    make_dev_certs(foreign, {3: "127.0.0.1"})
    c = LocalCluster(3, find_base_port(3), tmp_path / "c", extra_args=list(FAST), tls_dir=certs)
    try:
        # A new cluster starts with every member (each registers the others' data dirs);
        # then node 3 comes back with a certificate from another CA.
        c.start()
        c.wait_ready()
        leader(c)
        wait_until(lambda: all(info(c, k).get("standing") == "voter" for k in c.ids), what="voters")
        c.stop(3)
        command = c.command(3)
        command[command.index("--tls-cert-file") + 1] = str(foreign / "node3.crt")
        command[command.index("--tls-key-file") + 1] = str(foreign / "node3.key")
        with open(c.data_dir / "node3.log", "ab") as log:
            c.procs[3] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        c.wait_ready()
        lid = leader(c, among=[1, 2])
        assert client(c, lid).set("without-3", "ok") is True
        wait_until(
            lambda: "not signed by the cluster CA" in c.log_text(1) + c.log_text(2),
            what="a refusal logged by node 1 or 2",
        )
        assert client(c, 3).info("paxos").get("leader_id") in ("", None)
        with pytest.raises(redis.ResponseError, match=r"NOLEADER|TIMEOUT"):
            client(c, 3).exists("without-3")  # cut off: it cannot even confirm a read
    finally:
        stop(c)


def test_node_with_another_nodes_certificate_does_not_start(tmp_path: Path, certs: Path) -> None:
    c = LocalCluster(3, find_base_port(3), tmp_path / "c", extra_args=list(FAST), tls_dir=certs)
    command = c.command(3)
    command[command.index("--tls-cert-file") + 1] = str(certs / "node2.crt")
    command[command.index("--tls-key-file") + 1] = str(certs / "node2.key")
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "cannot identify node 3 to its peers" in out.stderr


def test_ca_rotation_with_sighup_keeps_the_cluster_serving(tmp_path: Path) -> None:
    """Bundle old and new CA everywhere, move each node to a new-CA certificate, drop the
    old CA: one SIGHUP per node and step, and no write fails meanwhile."""
    files = tmp_path / "tls"
    make_dev_certs(files, dict.fromkeys((1, 2, 3), "127.0.0.1"))
    old_ca = (files / "ca.crt").read_bytes()
    new_ca, new_key = make_ca()
    new_pem = tmp_path / "new-ca.crt"
    write_pair(tmp_path, "new-ca", new_ca, new_key)
    c = start(tmp_path, files)
    failures: list[BaseException] = []
    done = threading.Event()
    writes = [0]

    def writer() -> None:
        r = client(c, 1)
        while not done.is_set():
            try:
                r.set(f"rot-{writes[0]}", "x")
                writes[0] += 1
            except redis.RedisError as exc:
                failures.append(exc)

    def reloaded(k: int, step: str) -> None:
        before = c.log_text(k).count("TLS files reloaded")
        c.signal(k, signal.SIGHUP)
        wait_until(lambda: c.log_text(k).count("TLS files reloaded") > before, what=step)

    def sighup_all(step: str) -> None:
        for k in c.ids:
            reloaded(k, step)

    try:
        leader(c)
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        (files / "ca.crt").write_bytes(old_ca + new_pem.read_bytes())
        sighup_all("bundle")
        for k in c.ids:
            cert, key = issue(new_ca, new_key, f"node-{k}.pyxos", ["127.0.0.1", "localhost"])
            write_pair(files, f"node{k}", cert, key)
            reloaded(k, "new leaf")
        cert, key = issue(new_ca, new_key, "client", server=False)
        write_pair(files, "client", cert, key)
        (files / "ca.crt").write_bytes(new_pem.read_bytes())
        sighup_all("new CA only")
        count = writes[0]
        wait_until(lambda: writes[0] > count + 20, what="writes after the rotation")
        done.set()
        thread.join(10)
        assert [str(f) for f in failures] == []
        r = tls_client(c, 2, files)
        assert r.get("rot-0") == b"x"
        for k in c.ids:
            assert "rejected" not in c.log_text(k), c.log_text(k)[-3000:]
        # a broken file is refused on reload, and the node keeps the files in force
        (files / "node1.key").write_text("garbage")
        c.signal(1, signal.SIGHUP)
        wait_until(lambda: "TLS reload failed" in c.log_text(1), what="refused reload")
        assert client(c, 1).set("after-bad-reload", "ok") is True
    finally:
        done.set()
        stop(c)


def test_tls_only_cluster(tmp_path: Path, redis_cli: str) -> None:
    """As `pyxos cluster --tls-dir` runs it: `pyxos certs` files, no plain client port."""
    from click.testing import CliRunner

    from pyxos.cli import main

    files = tmp_path / "certs"
    c = LocalCluster(3, find_base_port(3), tmp_path / "c", extra_args=list(FAST),
                     tls_dir=files, plain_port=False)  # fmt: skip
    result = CliRunner().invoke(main, ["certs", "--out", str(files), "--nodes", "3"])
    assert result.exit_code == 0, result.output
    assert "--port" in c.command(1) and c.command(1)[c.command(1).index("--port") + 1] == "0"
    c.start()
    try:
        c.wait_ready()
        with tls_client(c, 1, files) as r1:
            wait_until(lambda: r1.info("paxos").get("leader_id"), what="a leader")
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", c.client_port(1))) != 0  # nothing listens
        port = str(c.tls_port(1))
        assert cli(redis_cli, *tls_flags(files), "-p", port, "SET", "only", "tls").stdout == "OK\n"
        with tls_client(c, 2, files) as r2:
            assert r2.get("only") == b"tls"
    finally:
        stop(c)
