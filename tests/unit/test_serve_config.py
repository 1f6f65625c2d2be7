"""``pyxos serve`` settings: TOML files, flag checks and start-up failures.

Bad configuration must be refused with a message that names the setting, before anything
listens or touches a data directory (exit status 2, like any usage error); a node that
cannot start (port taken, somebody else's data directory) must say so and exit with status
1, not with a traceback.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pyxos.cli import main
from pyxos.launch import process
from pyxos.launch.process import EXIT_CANNOT_START, ServeSettings, serve
from pyxos.runtime.config import ConfigError
from pyxos.storage import LmdbStorage, open_storage

CLUSTER = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"


def toml(tmp_path: Path, text: str, name: str = "node.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def settings(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {"id": 1, "cluster": CLUSTER, "data_dir": str(tmp_path / "d")}
    values.update(overrides)
    return ServeSettings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- ServeSettings.from_toml ---------------------------------------------------------------


def test_toml_values_are_used(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        f"""
        id = 2
        cluster = "{CLUSTER}"
        port = 7380
        data-dir = "{tmp_path / "n2"}"
        cluster_id = "prod"
        secret = "s3cret"
        tick_ms = 5
        election_ms = 400.0
        heartbeat_ms = 40
        snapshot_every = 1000
        max_clients = 5
        log_json = true
        """,
    )
    values = ServeSettings.from_toml(path)
    assert values["data_dir"] == str(tmp_path / "n2")  # "data-dir" is accepted as data_dir
    s = ServeSettings(**values)
    assert (s.port, s.max_clients, s.log_json) == (7380, 5, True)
    config = s.node_config()
    assert config.node_id == 2
    assert config.members[3] == ("127.0.0.1", 7003)
    assert config.data_dir == tmp_path / "n2"
    assert config.cluster_id == "prod"
    assert config.secret == b"s3cret"
    assert config.tick_seconds == 0.005
    assert (config.election_ticks, config.heartbeat_ticks) == (80, 8)
    assert config.snapshot_every == 1000


def test_toml_unknown_keys_are_rejected_by_name(tmp_path: Path) -> None:
    path = toml(tmp_path, 'id = 1\nmaxclients = 5\nbogus = "x"\n')
    expected = r"unknown setting\(s\) in .*node\.toml: bogus, maxclients$"
    with pytest.raises(ConfigError, match=expected):
        ServeSettings.from_toml(path)


def test_toml_extra_is_not_a_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*: extra$"):
        ServeSettings.from_toml(toml(tmp_path, "[extra]\na = 1\n"))


@pytest.mark.parametrize(
    "text",
    ["id = \n", "id = 1\nid = 2\n", "cluster = 'unterminated\n", "[[[\n", "\xff = 1\n"],
)
def test_bad_toml_is_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*node\.toml"):
        ServeSettings.from_toml(toml(tmp_path, text))


def test_missing_config_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.toml"):
        ServeSettings.from_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('max_clients = "5"\n', "max_clients"),
        ('port = "6380"\n', "port"),
        ("id = true\n", "id"),
        ("election_ms = false\n", "election_ms"),
        ("cluster = 1\n", "cluster"),
        ('log_json = "yes"\n', "log_json"),
        ("tick_ms = [10]\n", "tick_ms"),
        ("admin = 1.5\n", "admin"),
        ("password = 1234\n", "password"),
    ],
)
def test_toml_values_of_the_wrong_type_are_rejected(tmp_path: Path, text: str, name: str) -> None:
    with pytest.raises(ConfigError, match=f"setting '{name}' must be"):
        ServeSettings.from_toml(toml(tmp_path, text))


def test_wrong_types_from_python_are_caught_by_node_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting 'max_clients' must be an integer"):
        settings(tmp_path, max_clients="5").node_config()


# --- ServeSettings.node_config ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": 0}, "--id is required"),
        ({"id": -3}, "--id is required"),
        ({"data_dir": ""}, "--data-dir is required"),
        ({"cluster": ""}, "the cluster has no members"),
        ({"cluster": "1=host"}, r"bad cluster member '1=host': expected ID=HOST:PORT"),
        ({"cluster": "1:127.0.0.1:7001"}, "expected ID=HOST:PORT"),
        ({"cluster": "one=127.0.0.1:7001"}, "ID and PORT must be integers"),
        ({"cluster": "1=127.0.0.1:http"}, "ID and PORT must be integers"),
        ({"cluster": "1=127.0.0.1:70000"}, "port out of range"),
        ({"cluster": "0=127.0.0.1:7000"}, "ids start at 1"),
        ({"cluster": "1=a:7001,2=b:7002,1=c:7003"}, "node id 1 appears twice"),
        ({"id": 4}, r"--id 4 is not in the cluster \[1, 2, 3\]"),
        ({"heartbeat_ms": 300.0, "election_ms": 300.0}, "heartbeat_ms must be well below"),
        ({"heartbeat_ms": 500.0}, "heartbeat_ms must be well below"),
        ({"tick_ms": 0.0}, "tick_ms must be positive"),
        ({"election_ms": -1.0}, "election_ms must be positive"),
        ({"request_timeout": 0.0}, "request_timeout must be positive"),
        ({"port": 0}, "port 0 turns the plain client port off: give a --tls-port"),
        ({"port": -1}, r"port -1 is out of range \(0..65535\)"),
        ({"port": 65536}, "port 65536 is out of range"),
        ({"admin": 70000}, "admin 70000 is out of range"),
        ({"max_clients": 0}, "max_clients must be at least 1"),
        ({"snapshot_every": 0}, "snapshot_every must be at least 1"),
        ({"secret": ""}, "secret must not be empty"),
        ({"log_level": "verbose"}, "bad log level 'verbose'"),
        ({"test_bug": "nope"}, "unknown test bug 'nope'"),
        ({"storage": "rocksdb"}, "unknown storage engine 'rocksdb'"),
    ],
)
def test_node_config_errors(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **overrides).node_config()


def test_node_config_accepts_the_defaults_and_admin_off(tmp_path: Path) -> None:
    config = settings(tmp_path, admin=0, log_level="DEBUG").node_config()
    assert config.node_id == 1
    assert config.election_ticks == 30 and config.heartbeat_ticks == 5
    assert not (tmp_path / "d").exists()  # checking settings touches no disk


# --- pyxos serve on the command line ---------------------------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to actually run a node fails the test."""

    def refuse(settings: ServeSettings) -> int:
        raise AssertionError(f"a server was started with {settings}")

    monkeypatch.setattr(process, "run", refuse)


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--id is required"),
        (["--id", "1", "--cluster", "1=host", "--data-dir", "d"], "bad cluster member '1=host'"),
        (["--id", "1", "--cluster", CLUSTER], "--data-dir is required"),
        (["--id", "9", "--cluster", CLUSTER, "--data-dir", "d"], "--id 9 is not in the cluster"),
        (
            ["--id", "1", "--cluster", "1=a:1,1=b:2", "--data-dir", "d"],
            "node id 1 appears twice",
        ),
        (
            ["--id", "1", "--cluster", CLUSTER, "--data-dir", "d", "--heartbeat-ms", "400"],
            "heartbeat_ms must be well below election_ms",
        ),
        (
            ["--id", "1", "--cluster", CLUSTER, "--data-dir", "d", "--log-level", "loud"],
            "bad log level 'loud'",
        ),
        (
            ["--id", "1", "--cluster", CLUSTER, "--data-dir", "d", "--port", "99999"],
            "port 99999 is out of range",
        ),
        (["--port", "abc"], "'abc' is not a valid integer"),
        (["--tick-ms", "fast"], "'fast' is not a valid float"),
        (["--no-such-flag"], "No such option '--no-such-flag'"),
        (["--id"], "Option '--id' requires an argument"),
    ],
)
def test_serve_with_bad_flags_exits_2_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert "Error:" in result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id = 1\nmax_clients = 5\nbogus = 1\n", "unknown setting(s) in"),
        ("id = [1\n", "cannot read config file"),
        ('id = 1\nmax_clients = "lots"\n', "setting 'max_clients' must be an integer"),
        ('id = 1\ncluster = "1=host"\ndata_dir = "d"\n', "bad cluster member '1=host'"),
    ],
)
def test_serve_with_a_bad_config_file_exits_2(tmp_path: Path, text: str, message: str) -> None:
    path = toml(tmp_path, text)
    result = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("no_server")
def test_serve_with_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "cannot read config file" in result.output
    assert "missing.toml" in result.output


def test_flags_win_over_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ServeSettings] = []

    def fake_run(settings: ServeSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(process, "run", fake_run)
    monkeypatch.delenv("PYXOS_SECRET", raising=False)
    monkeypatch.delenv("PYXOS_PASSWORD", raising=False)
    path = toml(
        tmp_path,
        f'id = 1\ncluster = "{CLUSTER}"\ndata_dir = "from-file"\nport = 7000\n'
        'max_clients = 7\nelection_ms = 500\nsecret = "file-secret"\n',
    )
    result = CliRunner().invoke(
        main, ["serve", "--config", str(path), "--port", "7100", "--data-dir", "from-flag"]
    )
    assert result.exit_code == 0, result.output
    (s,) = seen
    assert (s.port, s.data_dir) == (7100, "from-flag")  # flags win
    assert (s.max_clients, s.election_ms, s.secret) == (7, 500, "file-secret")  # file fills in
    assert s.id == 1 and s.cluster == CLUSTER


# --- start-up failures ----------------------------------------------------------------------


async def test_a_taken_client_port_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = settings(
            tmp_path,
            id=1,
            cluster=f"1=127.0.0.1:{free_port()}",
            port=port,
            admin=None,
        )
        with caplog.at_level(logging.INFO, logger="pyxos"):
            status = await serve(s)
    assert status == EXIT_CANNOT_START
    messages = [r.getMessage() for r in caplog.records if r.name == "pyxos.serve"]
    assert any("node 1 cannot start" in m and "address already in use" in m for m in messages)
    assert not any(r.exc_info for r in caplog.records)
    # Everything was released: the same data directory opens again at once.
    open_storage(None, tmp_path / "d", node_id=1, cluster_id="pyxos", members=(1,)).close()


async def test_another_nodes_data_dir_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    LmdbStorage.open(tmp_path / "d", node_id=2, cluster_id="pyxos", members=(1, 2, 3)).close()
    s = settings(tmp_path, id=1, port=free_port(), admin=None)
    with caplog.at_level(logging.INFO, logger="pyxos"):
        status = await serve(s)
    assert status == EXIT_CANNOT_START
    messages = [r.getMessage() for r in caplog.records if r.name == "pyxos.serve"]
    assert any("cannot start" in m and "belongs to node 2" in m for m in messages)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cluster": "", "join": "127.0.0.1:7001"}, "--join needs --peer"),
        ({"join": "127.0.0.1:7001", "peer": "127.0.0.1:7009"}, "not both"),
        ({"peer": "127.0.0.1:7009"}, "--peer goes with --join"),
        ({"cluster": "", "join": "nowhere", "peer": "127.0.0.1:7009"}, "bad --join address"),
        ({"cluster": "", "join": "127.0.0.1:7001", "peer": "h:0"}, "port out of range"),
    ],
)
def test_join_settings_are_checked(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **overrides).node_config()


def test_a_joining_node_starts_with_only_itself_known(tmp_path: Path) -> None:
    s = settings(tmp_path, id=4, cluster="", join="127.0.0.1:7001", peer="10.0.0.4:7380")
    assert s.node_config().members == {4: ("10.0.0.4", 7380)}


def test_serve_refuses_to_start_a_node_no_member_added(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answers at the --join address: the node says so and exits with status 1."""
    import asyncio

    from pyxos.runtime import join

    async def quick(config: Any, addresses: Any, timeout: float = 60.0) -> Any:
        return await original(config, addresses, timeout=1.0)

    original = join.join_cluster
    s = settings(
        tmp_path,
        id=4,
        cluster="",
        join=f"127.0.0.1:{free_port()}",
        peer=f"127.0.0.1:{free_port()}",
        port=free_port(),
    )
    monkeypatch.setattr(process, "join_cluster", quick)
    with caplog.at_level(logging.CRITICAL):
        assert asyncio.run(serve(s)) == EXIT_CANNOT_START
    assert "cannot join" in caplog.text and "cannot connect" in caplog.text
