"""One node process: the replica, its Redis client port and its admin port.

``pyxos serve`` builds a :class:`ServeSettings` from flags and an optional TOML file and
calls :func:`run`. SIGTERM and Ctrl-C stop it cleanly; SIGHUP re-reads the TLS files (see
:mod:`pyxos.launch.tls_settings`); a storage failure stops it with
exit status 3 (it must not keep serving on state it could not persist). Settings of the
wrong type or out of range are refused by :meth:`ServeSettings.node_config` with a
:class:`ConfigError` naming the setting; a node that cannot start (its port is taken, its
data directory is locked or belongs to another cluster) logs why and exits with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pyxos.faults import BUGS, bug_named
from pyxos.kv import KVStateMachine
from pyxos.launch.tls_settings import TLS_SETTING_TYPES, check_tls, reload_tls, tls_contexts
from pyxos.runtime.config import ConfigError, NodeConfig, parse_cluster
from pyxos.runtime.join import JoinFailed, join_cluster, parse_join
from pyxos.runtime.node import Node
from pyxos.server.acl_file import load_acl_file
from pyxos.server.admin import AdminServer
from pyxos.server.port_state import ServerLimits
from pyxos.server.redis_server import RedisServer
from pyxos.storage.errors import StorageError
from pyxos.transport import TransportConfig
from pyxos.transport.tls import TLSContexts

EXIT_CANNOT_START = 1
EXIT_STORAGE_FAILED = 3
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# The TOML types each setting accepts (a TOML integer is fine where a float is expected).
_INT = (int,)
_FLOAT = (int, float)
_STR = (str,)
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "id": _INT,
    "cluster": _STR,
    "join": _STR,
    "peer": _STR,
    "port": _INT,
    "host": _STR,
    "admin": _INT,
    "admin_host": _STR,
    "data_dir": _STR,
    "storage": _STR,
    "cluster_id": _STR,
    "secret": _STR,
    "password": _STR,
    "aclfile": _STR,
    "tick_ms": _FLOAT,
    "election_ms": _FLOAT,
    "heartbeat_ms": _FLOAT,
    "snapshot_every": _INT,
    "request_timeout": _FLOAT,
    "max_clients": _INT,
    "log_level": _STR,
    "log_json": (bool,),
    "test_bug": _STR,
    **TLS_SETTING_TYPES,
}
_TYPE_NAMES: dict[tuple[type, ...], str] = {
    _INT: "an integer",
    _FLOAT: "a number",
    _STR: "a string",
    (bool,): "true or false",
    (str, bool): "yes, no, true or false",
}


@dataclass(slots=True)
class ServeSettings:
    """Everything ``pyxos serve`` accepts; TOML keys use the same names."""

    id: int = 0
    cluster: str = ""
    join: str = ""
    """Peer addresses of members of a running cluster this node was added to."""
    peer: str = ""
    """This node's own peer address, with ``join`` (``cluster`` names it otherwise)."""
    port: int = 6380
    host: str = "127.0.0.1"
    admin: int | None = None
    admin_host: str = "127.0.0.1"
    data_dir: str = ""
    storage: str | None = None
    cluster_id: str = "pyxos"
    secret: str = "pyxos-insecure-default-secret"
    password: str | None = None
    aclfile: str | None = None
    """Users to start with, in Redis's ACL file format (see pyxos.server.acl_file)."""
    tick_ms: float = 10.0
    election_ms: float = 300.0
    heartbeat_ms: float = 50.0
    snapshot_every: int = 50_000
    request_timeout: float = 5.0
    max_clients: int = 10_000
    log_level: str = "info"
    log_json: bool = False
    test_bug: str | None = None
    tls_port: int = 0
    """Client port speaking TLS (0: none), Redis's ``tls-port``."""
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_key_file_pass: str | None = None
    tls_ca_cert_file: str | None = None
    tls_auth_clients: str = "yes"
    """Client certificates on the TLS port: required (Redis's default), optional or ignored."""
    tls_cluster: str | bool = "no"
    """Mutual TLS on peer links (Redis's ``tls-cluster``, its cluster bus)."""
    admin_tls: str | bool = "no"
    admin_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: Path) -> dict[str, Any]:
        """The settings in a TOML file, checked against the known names."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        known = {f.name for f in fields(cls)} - {"extra"}
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
        for name, value in data.items():
            problem = _type_problem(name, value)
            if problem:
                raise ConfigError(f"{path}: {problem}")
        return data

    def check(self) -> None:
        """Refuse settings of the wrong type or out of range, naming the setting."""
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and (
                f.name in ("admin", "password", "aclfile", "test_bug", "storage", "admin_token")
                or f.name.startswith("tls_")
            ):
                continue
            problem = _type_problem(f.name, value)
            if problem:
                raise ConfigError(problem)
        for name in ("port", "admin", "tls_port"):
            port = getattr(self, name)
            # 0 switches the port off; the plain client port only when a TLS one replaces it
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{name} {port} is out of range (0..65535)")
        if self.port == 0 and not self.tls_port:
            raise ConfigError("port 0 turns the plain client port off: give a --tls-port")
        check_tls(self)
        for name in ("tick_ms", "election_ms", "heartbeat_ms", "request_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.max_clients < 1:
            raise ConfigError("max_clients must be at least 1")
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"bad log level {self.log_level!r}: choose from {', '.join(LOG_LEVELS)}"
            )
        if self.test_bug is not None and self.test_bug not in BUGS:
            raise ConfigError(f"unknown test bug {self.test_bug!r}")
        if self.aclfile is not None:
            load_acl_file(self.aclfile)  # refuse a bad file before anything starts

    def initial_members(self) -> dict[int, tuple[str, int]]:
        """The peers known before start: ``--cluster``, or only this node with ``--join``
        (it learns the others from the cluster, :mod:`pyxos.runtime.join`)."""
        if self.join:
            if self.cluster:
                raise ConfigError(
                    "give --cluster (a new cluster) or --join (an added node), not both"
                )
            parse_join(self.join)
            if not self.peer:
                raise ConfigError("--join needs --peer HOST:PORT, this node's own peer address")
            return parse_cluster(f"{self.id}={self.peer}")
        if self.peer:
            raise ConfigError("--peer goes with --join (with --cluster, the cluster names it)")
        return parse_cluster(self.cluster)

    def node_config(self, tls: TLSContexts | None = None) -> NodeConfig:
        """The node's configuration; :class:`ConfigError` if any setting cannot work.

        ``tls``: the node's TLS contexts when already built (else built here, to check the
        files); the transport gets them when ``tls_cluster`` is on.
        """
        if not isinstance(self.id, int) or isinstance(self.id, bool) or self.id <= 0:
            raise ConfigError("--id is required (a positive node id)")
        if not self.data_dir:
            raise ConfigError("--data-dir is required")
        self.check()
        election = max(2, round(self.election_ms / self.tick_ms))
        heartbeat = max(1, round(self.heartbeat_ms / self.tick_ms))
        if heartbeat >= election:
            raise ConfigError("heartbeat_ms must be well below election_ms")
        members = self.initial_members()
        if tls is None:
            tls = tls_contexts(self, members)
        peer_tls = tls if tls is not None and "peer" in tls.roles else None
        return NodeConfig(
            node_id=self.id,
            members=members,
            data_dir=Path(self.data_dir),
            storage=self.storage,
            cluster_id=self.cluster_id,
            secret=self.secret.encode(),
            tick_seconds=self.tick_ms / 1000,
            election_ticks=election,
            heartbeat_ticks=heartbeat,
            snapshot_every=self.snapshot_every,
            transport=TransportConfig(tls=peer_tls) if peer_tls is not None else None,
        )


def _type_problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be the setting ``name``, or ``None`` if its type fits."""
    wanted = _SETTING_TYPES.get(name)
    if wanted is None:
        return None
    if isinstance(value, wanted) and (bool in wanted or not isinstance(value, bool)):
        if wanted == (str, bool) and isinstance(value, str) and value not in ("yes", "no"):
            return f"setting {name!r} must be {_TYPE_NAMES[wanted]}, not {value!r}"
        return None
    return f"setting {name!r} must be {_TYPE_NAMES[wanted]}, not {value!r}"


class _JsonFormatter(logging.Formatter):
    def __init__(self, node_id: int) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "node": self.node_id,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(node_id: int, level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter(node_id))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s node={node_id} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError as exc:
        raise ConfigError(f"bad log level {level!r}") from exc


async def serve(settings: ServeSettings, ready: asyncio.Event | None = None) -> int:
    """Run one node until SIGTERM/SIGINT; return the process exit status."""
    log = logging.getLogger("pyxos.serve")
    tls = tls_contexts(settings, settings.initial_members())
    config = settings.node_config(tls)
    if settings.join:
        try:
            config = await join_cluster(config, parse_join(settings.join))
        except (JoinFailed, StorageError, OSError) as exc:
            log.critical("node %d cannot join: %s", config.node_id, exc)
            return EXIT_CANNOT_START
    stop = asyncio.Event()
    status = 0

    def fatal(reason: str) -> None:
        nonlocal status
        status = EXIT_STORAGE_FAILED
        stop.set()

    kv = KVStateMachine()
    try:
        bug = bug_named(settings.test_bug) if settings.test_bug is not None else None
        node = Node(config, kv, on_fatal=fatal, bug=bug)
    except (StorageError, OSError) as exc:
        log.critical("node %d cannot start: %s", config.node_id, exc)
        return EXIT_CANNOT_START
    limits = ServerLimits(timeout=settings.request_timeout, max_clients=settings.max_clients)
    redis = RedisServer(
        node,
        kv,
        settings.host,
        settings.port,
        password=settings.password,
        aclfile=settings.aclfile,
        limits=limits,
        tls=tls if tls is not None and "clients" in tls.roles else None,
        tls_port=settings.tls_port,
    )
    admin = None
    if settings.admin:
        admin_tls = tls if tls is not None and "admin" in tls.roles else None
        admin = AdminServer(
            node, settings.admin_host, settings.admin, tls=admin_tls, token=settings.admin_token
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if tls is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, reload_tls, tls, settings, config.members)
    started = time.monotonic()
    try:
        await node.start()
        await redis.start()
        if admin is not None:
            await admin.start()
    except OSError as exc:
        # Typically a port that is already taken: say which, rather than a traceback.
        log.critical("node %d cannot start: %s", config.node_id, exc)
        if admin is not None:
            await admin.close()
        await redis.close()
        await node.close()
        return EXIT_CANNOT_START
    log.info(
        "node %d up in %.2fs: %s%s, peers on %s:%d%s%s",
        config.node_id,
        time.monotonic() - started,
        f"clients on {settings.host}:{settings.port}" if settings.port else "no plain clients",
        f", TLS clients on {settings.host}:{settings.tls_port}" if redis.tls_address else "",
        *config.members[config.node_id],
        " (mutual TLS)" if config.transport is not None and config.transport.tls else "",
        f", admin on {settings.admin_host}:{settings.admin}" if admin else "",
    )
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("node %d stopping", config.node_id)
    if admin is not None:
        await admin.close()
    await redis.close()
    await node.close()
    return status


def run(settings: ServeSettings) -> int:
    """Blocking entry point for the CLI: uvloop when installed."""
    configure_logging(settings.id, settings.log_level, settings.log_json)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve(settings))
    return int(uvloop.run(serve(settings)))
