"""One node process: the replica, its Redis client port and its admin port.

``pyxos serve`` builds a :class:`ServeSettings` from flags and an optional TOML file and
calls :func:`run`. SIGTERM and Ctrl-C stop it cleanly; a storage failure stops it with
exit status 3 (it must not keep serving on state it could not persist).
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

from pyxos.kv import KVStateMachine
from pyxos.runtime.config import ConfigError, NodeConfig, parse_cluster
from pyxos.runtime.node import Node
from pyxos.server.admin import AdminServer
from pyxos.server.redis_server import RedisServer, ServerLimits

EXIT_STORAGE_FAILED = 3


@dataclass(slots=True)
class ServeSettings:
    """Everything ``pyxos serve`` accepts; TOML keys use the same names."""

    id: int = 0
    cluster: str = ""
    port: int = 6380
    host: str = "127.0.0.1"
    admin: int | None = None
    admin_host: str = "127.0.0.1"
    data_dir: str = ""
    cluster_id: str = "pyxos"
    secret: str = "pyxos-insecure-default-secret"
    password: str | None = None
    tick_ms: float = 10.0
    election_ms: float = 300.0
    heartbeat_ms: float = 50.0
    snapshot_every: int = 50_000
    request_timeout: float = 5.0
    max_clients: int = 10_000
    log_level: str = "info"
    log_json: bool = False
    test_bug: str | None = None
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
        return data

    def node_config(self) -> NodeConfig:
        if self.id <= 0:
            raise ConfigError("--id is required (a positive node id)")
        if not self.data_dir:
            raise ConfigError("--data-dir is required")
        if self.tick_ms <= 0:
            raise ConfigError("tick_ms must be positive")
        election = max(2, round(self.election_ms / self.tick_ms))
        heartbeat = max(1, round(self.heartbeat_ms / self.tick_ms))
        if heartbeat >= election:
            raise ConfigError("heartbeat_ms must be well below election_ms")
        return NodeConfig(
            node_id=self.id,
            members=parse_cluster(self.cluster),
            data_dir=Path(self.data_dir),
            cluster_id=self.cluster_id,
            secret=self.secret.encode(),
            tick_seconds=self.tick_ms / 1000,
            election_ticks=election,
            heartbeat_ticks=heartbeat,
            snapshot_every=self.snapshot_every,
        )


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
    config = settings.node_config()
    log = logging.getLogger("pyxos.serve")
    stop = asyncio.Event()
    status = 0

    def fatal(reason: str) -> None:
        nonlocal status
        status = EXIT_STORAGE_FAILED
        stop.set()

    kv = KVStateMachine()
    node = Node(config, kv, on_fatal=fatal, test_bug=settings.test_bug)
    limits = ServerLimits(timeout=settings.request_timeout, max_clients=settings.max_clients)
    redis = RedisServer(
        node, kv, settings.host, settings.port, password=settings.password, limits=limits
    )
    admin = AdminServer(node, settings.admin_host, settings.admin) if settings.admin else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await node.start()
    await redis.start()
    if admin is not None:
        await admin.start()
    log.info(
        "node %d up in %.2fs: clients on %s:%d, peers on %s:%d%s",
        config.node_id,
        time.monotonic() - started,
        settings.host,
        settings.port,
        *config.members[config.node_id],
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
