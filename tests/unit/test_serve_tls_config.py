"""TLS settings of ``pyxos serve``, and ``pyxos certs``: what is made, and what is refused.

Certificates are made at test time by ``pyxos certs`` code into a temporary directory.
"""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pyxos.certs import certificate_info, issue, load_ca, make_dev_certs, write_pair
from pyxos.cli import main
from pyxos.launch.process import ServeSettings
from pyxos.runtime.config import ConfigError
from pyxos.transport.certnames import certificate_problem

CLUSTER = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
MEMBERS = {1: ("127.0.0.1", 7001), 2: ("127.0.0.1", 7002), 3: ("127.0.0.1", 7003)}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_dev_certs(out, dict.fromkeys((1, 2, 3), "127.0.0.1"))
    return out


def settings(tmp_path: Path, certs: Path, node: int = 1, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "id": node,
        "cluster": CLUSTER,
        "data_dir": str(tmp_path / "d"),
        "tls_cert_file": str(certs / f"node{node}.crt"),
        "tls_key_file": str(certs / f"node{node}.key"),
        "tls_ca_cert_file": str(certs / "ca.crt"),
    }
    values.update(overrides)
    return ServeSettings(**values)


# --- pyxos certs ------------------------------------------------------------------------


def test_dev_certs_chain_to_the_ca_and_name_their_nodes(certs: Path) -> None:
    for name in ("ca.crt", "ca.key", "node1.crt", "node3.key", "client.crt", "client.key"):
        assert (certs / name).exists(), name
    for key in certs.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    for stem in ("node1", "node2", "client"):
        ctx.load_cert_chain(certs / f"{stem}.crt", certs / f"{stem}.key")  # key matches cert
    for node in (1, 2, 3):
        info = certificate_info(certs / f"node{node}.crt")
        assert certificate_problem(info.peercert, node, MEMBERS, "pyxos") is None
        assert certificate_problem(info.peercert, node % 3 + 1, MEMBERS, "pyxos") is not None
    client = x509.load_pem_x509_certificate((certs / "client.crt").read_bytes())
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    node1 = x509.load_pem_x509_certificate((certs / "node1.crt").read_bytes())
    usage = node1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = node1.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "node-1.pyxos" in names.get_values_for_type(x509.DNSName)
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_certs_command_reuses_the_ca_and_names_hosts(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["certs", "--out", str(tmp_path), "--nodes", "2"])
    assert first.exit_code == 0, first.output
    assert "new CA" in first.output and "node-2.pyxos" in first.output
    ca_before = (tmp_path / "ca.crt").read_bytes()
    second = runner.invoke(
        main,
        ["certs", "--out", str(tmp_path), "--cluster", "1=10.0.0.1:7000,4=db4:7000",
         "--cluster-id", "prod", "--host", "db.example", "--client", "ops"],
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "reused the CA" in second.output
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    info = certificate_info(tmp_path / "node4.crt")
    spread = {1: ("10.0.0.1", 7000), 4: ("db4", 7000)}
    assert certificate_problem(info.peercert, 4, spread, "prod") is None
    assert ("DNS", "db.example") in info.peercert["subjectAltName"]  # type: ignore[operator]
    assert (tmp_path / "ops.crt").exists()
    third = runner.invoke(main, ["certs", "--out", str(tmp_path), "--new-ca", "--nodes", "1"])
    assert third.exit_code == 0 and (tmp_path / "ca.crt").read_bytes() != ca_before


@pytest.mark.parametrize("name", ["../evil", "ca", "node2", ""])
def test_certs_command_refuses_client_names_that_clobber_files(tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(main, ["certs", "--out", str(tmp_path), "--client", name])
    assert result.exit_code == 2 and "--client" in result.output


# --- serve settings -----------------------------------------------------------------------


def test_tls_everywhere_builds_one_set_of_contexts(tmp_path: Path, certs: Path) -> None:
    s = settings(tmp_path, certs, port=0, tls_port=7390, tls_cluster="yes", admin_tls=True,
                 admin=7490)  # fmt: skip
    config = s.node_config()
    assert config.transport is not None and config.transport.tls is not None
    assert config.transport.tls.roles == ("peer", "clients", "admin")
    assert config.transport.tls.clients is not None
    assert config.transport.tls.clients.verify_mode == ssl.CERT_REQUIRED  # Redis's default


def test_client_tls_alone_leaves_peer_links_plain(tmp_path: Path, certs: Path) -> None:
    config = settings(tmp_path, certs, tls_port=7390, tls_auth_clients="optional").node_config()
    assert config.transport is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_port": 7390, "tls_cert_file": None}, "needs tls_cert_file and tls_key_file"),
        ({"tls_cluster": "yes", "tls_ca_cert_file": None}, "tls_cluster needs tls_ca_cert_file"),
        ({"tls_port": 7390, "tls_ca_cert_file": None}, "tls_auth_clients yes/optional needs"),
        ({"tls_port": 7390, "tls_auth_clients": "maybe"}, "bad tls_auth_clients 'maybe'"),
        ({"tls_port": 6380}, "tls_port 6380 is also the client or admin port"),
        ({"tls_port": 70000}, "tls_port 70000 is out of range"),
        ({"admin_tls": "yes"}, "admin_tls needs an admin port"),
        ({"admin_token": "short"}, "admin_token must be at least 16 characters"),
        ({"tls_cluster": "maybe"}, "must be yes, no, true or false"),
        ({"tls_port": 7390, "tls_key_file": "/nonexistent.key"}, "no such file"),
        ({"tls_port": 7390, "tls_key_file_pass": "x"}, None),  # unencrypted key: ignored
    ],
)
def test_bad_tls_settings_are_refused_by_name(
    tmp_path: Path, certs: Path, overrides: dict[str, Any], message: str | None
) -> None:
    s = settings(tmp_path, certs, **overrides)
    if message is None:
        s.node_config()
        return
    with pytest.raises(ConfigError, match=message):
        s.node_config()


def test_a_node_refuses_to_start_with_another_nodes_certificate(
    tmp_path: Path, certs: Path
) -> None:
    other = {"tls_cert_file": str(certs / "node2.crt"), "tls_key_file": str(certs / "node2.key")}
    s = settings(tmp_path, certs, node=1, tls_cluster="yes", **other)
    with pytest.raises(ConfigError, match=r"cannot identify node 1 to its peers: .*names node"):
        s.node_config()
    # the same certificate is fine for the client port alone: clients do not check node ids
    s.tls_cluster, s.tls_port = "no", 7390
    s.node_config()


def test_a_node_refuses_to_start_with_an_expired_certificate(tmp_path: Path, certs: Path) -> None:
    loaded = load_ca(certs)
    assert loaded is not None
    now = dt.datetime.now(dt.UTC)
    cert, key = issue(*loaded, "node-1.pyxos", not_before=now - dt.timedelta(days=9),
                      not_after=now - dt.timedelta(days=1))  # fmt: skip
    crt = write_pair(tmp_path, "expired", cert, key)
    s = settings(tmp_path, certs, tls_port=7390, tls_cert_file=str(crt),
                 tls_key_file=str(tmp_path / "expired.key"))  # fmt: skip
    with pytest.raises(ConfigError, match="expired on"):
        s.node_config()


def test_toml_takes_tls_settings_in_redis_spelling(tmp_path: Path, certs: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        f'tls-port = 7390\ntls-cert-file = "{certs / "node1.crt"}"\n'
        f'tls-key-file = "{certs / "node1.key"}"\ntls-ca-cert-file = "{certs / "ca.crt"}"\n'
        'tls-cluster = true\ntls-auth-clients = "no"\nadmin-token = "0123456789abcdef"\n'
    )
    values = ServeSettings.from_toml(path)
    assert values["tls_port"] == 7390 and values["tls_cluster"] is True
    s = ServeSettings(id=1, cluster=CLUSTER, data_dir=str(tmp_path / "d"), **values)
    config = s.node_config()
    assert config.transport is not None and config.transport.tls is not None
    path.write_text('tls-cluster = "perhaps"\n')
    with pytest.raises(ConfigError, match="tls_cluster"):
        ServeSettings.from_toml(path)


def test_serve_flags_reach_the_settings(tmp_path: Path, certs: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--id", "1", "--cluster", CLUSTER, "--data-dir", str(tmp_path / "d"),
         "--port", "0", "--tls-port", "7390", "--tls-cert-file", str(certs / "node2.crt"),
         "--tls-key-file", str(certs / "node2.key"), "--tls-ca-cert-file",
         str(certs / "ca.crt"), "--tls-cluster", "yes"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "cannot identify node 1 to its peers" in result.output
