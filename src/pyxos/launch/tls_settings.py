"""The TLS settings of ``pyxos serve``: checked, turned into contexts, reloaded on SIGHUP.

The flag names are Redis's own (``--tls-port``, ``--tls-cert-file``, ``--tls-key-file``,
``--tls-key-file-pass``, ``--tls-ca-cert-file``, ``--tls-auth-clients``, ``--tls-cluster``)
so that operators who run Redis need nothing new; ``--admin-tls`` and ``--admin-token``
protect the admin port. One certificate and key serve all three ports, and one CA
verifies clients, admin callers and peers.

A node refuses to start with files it cannot use, and with a peer certificate that its
peers would refuse (one that does not name it, or has expired): better a clear error at
start than a node that cannot join and says so only in the other nodes' logs. SIGHUP
re-reads the same paths (:func:`reload_tls`); a bad file is logged and the current ones
stay in force.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Protocol

from pyxos.runtime.config import ConfigError
from pyxos.transport.certnames import certificate_problem
from pyxos.transport.tls import AUTH_CLIENTS, TLSConfigError, TLSContexts, TLSFiles

log = logging.getLogger("pyxos.serve")

TLS_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "tls_port": (int,),
    "tls_cert_file": (str,),
    "tls_key_file": (str,),
    "tls_key_file_pass": (str,),
    "tls_ca_cert_file": (str,),
    "tls_auth_clients": (str,),
    "tls_cluster": (str, bool),
    "admin_tls": (str, bool),
    "admin_token": (str,),
}
MIN_TOKEN = 16
EXPIRY_WARNING = dt.timedelta(days=30)


class TLSServeSettings(Protocol):
    """The settings of ``pyxos serve`` this module reads.

    :class:`~pyxos.launch.process.ServeSettings` has them all; naming only these keeps this
    module below the one that builds the process (no import back up to it).
    """

    id: int
    port: int
    admin: int | None
    cluster_id: str
    tls_port: int
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_key_file_pass: str | None
    tls_ca_cert_file: str | None
    tls_auth_clients: str
    tls_cluster: str | bool
    admin_tls: str | bool
    admin_token: str | None


def is_on(value: str | bool) -> bool:
    """``yes``/``true`` (Redis's spelling in flags, TOML's in files)."""
    return value is True or value == "yes"


def check_tls(s: TLSServeSettings) -> None:
    """Refuse TLS settings that cannot work together, naming them."""
    if s.tls_auth_clients not in AUTH_CLIENTS:
        raise ConfigError(
            f"bad tls_auth_clients {s.tls_auth_clients!r}: choose {', '.join(AUTH_CLIENTS)}"
        )
    peers, admin_tls = is_on(s.tls_cluster), is_on(s.admin_tls)
    if (s.tls_port or peers or admin_tls) and not (s.tls_cert_file and s.tls_key_file):
        raise ConfigError(
            "TLS (tls_port, tls_cluster or admin_tls) needs tls_cert_file and tls_key_file"
        )
    if not s.tls_ca_cert_file:
        if peers:
            raise ConfigError("tls_cluster needs tls_ca_cert_file to verify the peers")
        if s.tls_port and s.tls_auth_clients != "no":
            raise ConfigError(
                "tls_auth_clients yes/optional needs tls_ca_cert_file (or set it to no)"
            )
    if s.tls_port and s.tls_port in (s.port, s.admin):
        raise ConfigError(f"tls_port {s.tls_port} is also the client or admin port")
    if admin_tls and not s.admin:
        raise ConfigError("admin_tls needs an admin port (--admin)")
    if s.admin_token is not None and len(s.admin_token) < MIN_TOKEN:
        raise ConfigError(f"admin_token must be at least {MIN_TOKEN} characters")


def tls_contexts(s: TLSServeSettings, members: dict[int, tuple[str, int]]) -> TLSContexts | None:
    """The node's TLS contexts for the ports that use TLS, or ``None`` when none does."""
    roles = tuple(
        role
        for role, on in (
            ("peer", is_on(s.tls_cluster)),
            ("clients", bool(s.tls_port)),
            ("admin", is_on(s.admin_tls) and bool(s.admin)),
        )
        if on
    )
    if not roles:
        return None
    assert s.tls_cert_file and s.tls_key_file  # check_tls
    files = TLSFiles(
        Path(s.tls_cert_file),
        Path(s.tls_key_file),
        Path(s.tls_ca_cert_file) if s.tls_ca_cert_file else None,
        s.tls_key_file_pass,
    )
    try:
        contexts = TLSContexts(files, roles, s.tls_auth_clients)
    except TLSConfigError as exc:
        raise ConfigError(str(exc)) from exc
    problem = own_certificate_problem(files.cert_file, s.id, members, s.cluster_id, "peer" in roles)
    if problem is not None:
        raise ConfigError(problem)
    return contexts


def own_certificate_problem(
    path: Path,
    node_id: int,
    members: dict[int, tuple[str, int]],
    cluster_id: str,
    peers: bool,
    now: dt.datetime | None = None,
) -> str | None:
    """Why this node's certificate cannot work (expired, not yet valid, or, with peer TLS,
    not naming this node), or ``None``; logs a warning when it expires soon."""
    from pyxos.certs import certificate_info

    try:
        info = certificate_info(path)
    except (OSError, ValueError) as exc:
        return f"cannot read tls_cert_file {path}: {exc}"
    now = now or dt.datetime.now(dt.UTC)
    if info.not_after <= now:
        return f"tls_cert_file {path} expired on {info.not_after:%Y-%m-%d %H:%M} UTC"
    if info.not_before > now:
        return f"tls_cert_file {path} is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC"
    if info.not_after - now < EXPIRY_WARNING:
        log.warning("tls_cert_file %s expires on %s UTC", path, f"{info.not_after:%Y-%m-%d}")
    if peers:
        problem = certificate_problem(info.peercert, node_id, members, cluster_id)
        if problem is not None:
            return f"tls_cert_file {path} cannot identify node {node_id} to its peers: {problem}"
    return None


def reload_tls(tls: TLSContexts, s: TLSServeSettings, members: dict[int, tuple[str, int]]) -> None:
    """SIGHUP: re-read the TLS files; on any problem keep the current ones and say why."""
    problem = own_certificate_problem(
        tls.files.cert_file, s.id, members, s.cluster_id, "peer" in tls.roles
    )
    try:
        if problem is not None:
            raise TLSConfigError(problem)
        tls.reload()
    except TLSConfigError as exc:
        log.error("node %d: TLS reload failed, the current files stay in force: %s", s.id, exc)
        return
    log.info("node %d: TLS files reloaded (reload %d)", s.id, tls.reloads)
