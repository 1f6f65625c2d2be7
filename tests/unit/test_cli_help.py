"""Every ``pyxos`` command documents itself, and ``pyxos status`` reports, not raises."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from pyxos.cli import main

# The options each command's --help must mention (the ones its users need first).
KEY_OPTIONS = {
    "serve": [
        "--config",
        "--id",
        "--cluster",
        "--port",
        "--host",
        "--admin",
        "--data-dir",
        "--cluster-id",
        "--secret",
        "PYXOS_SECRET",
        "--password",
        "--tick-ms",
        "--election-ms",
        "--heartbeat-ms",
        "--snapshot-every",
        "--request-timeout",
        "--log-level",
        "--log-json",
        "TOML",
        "--tls-port",
        "--tls-cert-file",
        "--tls-key-file",
        "--tls-ca-cert-file",
        "--tls-auth-clients",
        "--tls-cluster",
        "--admin-tls",
        "--admin-token",
        "SIGHUP",
    ],
    "cluster": ["--nodes", "--port", "--data-dir", "PORT+k-1", "PORT+2000+k-1", "--tls-dir"],
    "certs": ["--out", "--nodes", "--cluster", "--cluster-id", "--host", "--client", "--new-ca"],
    "demo": ["--writes", "--port", "--data-dir", "SIGKILL"],
    "status": ["--endpoints", "--json", "127.0.0.1:6380"],
    "sim": ["--seeds", "--start-seed", "--nodes", "--scenario", "--jobs", "--json", "duelling"],
    "chaos": [
        "--duration",
        "--nodes",
        "--nemesis",
        "--seed",
        "--clients",
        "--keys",
        "--out",
        "--json",
    ],
    "check": ["FILE", "--timeout", "--json", "linearizab"],
}
REQUIRED = {"serve", "cluster", "demo", "status"}  # what the issue asks for by name


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), prog_name="pyxos")
    return result.exit_code, result.output


def test_top_level_help_lists_every_command() -> None:
    code, out = invoke("--help")
    assert code == 0
    assert out.startswith("Usage: pyxos [OPTIONS] COMMAND [ARGS]...")
    assert "Multi-Paxos" in out
    for name in main.commands:
        assert f"  {name} " in out
    assert set(main.commands) >= REQUIRED
    assert invoke("-h") == (code, out)


@pytest.mark.parametrize("name", sorted(set(main.commands) | set(KEY_OPTIONS)))
def test_every_command_has_help(name: str) -> None:
    assert name in main.commands, f"pyxos {name} is gone"
    code, out = invoke(name, "--help")
    assert code == 0, out
    assert out.startswith(f"Usage: pyxos {name} "), out
    assert "-h, --help" in out
    description = out.split("\n\n", 2)[1].strip()
    assert len(description) > 20, f"pyxos {name} --help has no description"
    missing = [opt for opt in KEY_OPTIONS.get(name, []) if opt not in out]
    assert not missing, f"pyxos {name} --help does not mention {missing}:\n{out}"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_help_does_not_run_the_command(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyxos.launch import local_cluster, process

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("--help must not start anything")

    monkeypatch.setattr(process, "run", boom)
    monkeypatch.setattr(local_cluster.LocalCluster, "start", boom)
    code, out = invoke(name, "-h")
    assert code == 0 and "Usage:" in out


def test_version() -> None:
    code, out = invoke("--version")
    assert code == 0
    assert "version" in out


def test_unknown_command_is_a_usage_error() -> None:
    code, out = invoke("frobnicate")
    assert code == 2
    assert "No such command 'frobnicate'" in out


# --- pyxos status against nodes that are not there --------------------------------------------


@pytest.fixture
def rude_server() -> Iterator[int]:
    """A TCP port that accepts connections and closes them without a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.sendall(b"-ERR not a pyxos node\r\n")
            conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        srv.close()


def test_status_of_an_unreachable_node_shows_an_error_row() -> None:
    code, out = invoke("status", "--endpoints", "127.0.0.1:1")
    assert code == 1
    assert "Traceback" not in out
    assert "127.0.0.1:1" in out
    assert "refused" in out.lower()


def test_status_json_has_one_error_row_per_bad_endpoint(rude_server: int) -> None:
    endpoints = f"127.0.0.1:1,nonsense,127.0.0.1:{rude_server}"
    code, out = invoke("status", "--endpoints", endpoints, "--json")
    assert code == 1
    rows = json.loads(out.strip().splitlines()[-1])
    assert [r["endpoint"] for r in rows] == ["127.0.0.1:1", "nonsense", f"127.0.0.1:{rude_server}"]
    assert all(set(r) == {"endpoint", "error"} and r["error"] for r in rows)
    assert "refused" in rows[0]["error"].lower()
    assert "not a pyxos node" in rows[2]["error"]


def test_status_with_no_endpoints_fails() -> None:
    code, out = invoke("status", "--endpoints", " , ")
    assert code == 1
    assert "Traceback" not in out
