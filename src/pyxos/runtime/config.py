"""Everything one node needs to know to run, checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pyxos.core.replica import Options
from pyxos.storage.records import ENGINE_MARKERS
from pyxos.transport import TransportConfig


class ConfigError(ValueError):
    """A node configuration that cannot work; the message says which setting and why."""


def parse_cluster(spec: str) -> dict[int, tuple[str, int]]:
    """Parse ``1=host:port,2=host:port,...`` into ``{id: (host, port)}``."""
    members: dict[int, tuple[str, int]] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        ident, sep, address = part.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host:
            raise ConfigError(f"bad cluster member {part!r}: expected ID=HOST:PORT")
        try:
            node_id, port_number = int(ident), int(port)
        except ValueError:
            raise ConfigError(
                f"bad cluster member {part!r}: ID and PORT must be integers"
            ) from None
        if node_id <= 0:
            raise ConfigError(f"bad cluster member {part!r}: ids start at 1")
        if not 0 < port_number < 65536:
            raise ConfigError(f"bad cluster member {part!r}: port out of range")
        if node_id in members:
            raise ConfigError(f"node id {node_id} appears twice in the cluster")
        members[node_id] = (host.strip("[]"), port_number)
    if not members:
        raise ConfigError("the cluster has no members")
    return members


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's settings. Times are in seconds; the core counts ticks."""

    node_id: int
    members: dict[int, tuple[str, int]]
    data_dir: Path
    cluster_id: str = "pyxos"
    storage: str | None = None
    """Storage engine: ``sqlite`` (WAL mode, one fsync per batch) or ``lmdb`` (two); None
    opens what the data dir holds, and makes a new one with SQLite."""
    secret: bytes = b"pyxos-insecure-default-secret"
    tick_seconds: float = 0.01
    election_ticks: int = 30
    heartbeat_ticks: int = 5
    snapshot_every: int = 50_000
    """Take a snapshot and compact the log after this many applied slots."""
    snapshot_chunk: int = 512 * 1024
    """Bytes per snapshot chunk; below the transport's 1 MiB split size."""
    core: Options = field(default_factory=Options)
    transport: TransportConfig | None = None
    """Peer link settings (queues, heartbeats, reconnects); defaults when None."""
    check_members: bool = True
    """Refuse a data dir made for other ``members`` (a mistyped ``--cluster``). Off for
    a node that joined a running cluster: its members come from the membership its data
    dir holds, which the log keeps changing."""
    inline_writes: bool = False
    """While not leading, write and sync each batch on the event loop's thread instead of
    the I/O thread (see :meth:`pyxos.runtime.shell.Shell._inline`). Cheaper per batch,
    but it ties a follower's answers to heartbeats to its disk's latency: while a sync
    takes longer than an election timeout the leader hears from no one (on a loaded
    machine, both followers of a test cluster did so at once and the leader stepped down).
    Off by default; for a dedicated fast disk."""

    def __post_init__(self) -> None:
        if self.node_id not in self.members:
            raise ConfigError(f"--id {self.node_id} is not in the cluster {sorted(self.members)}")
        if self.tick_seconds <= 0:
            raise ConfigError("tick must be positive")
        if self.snapshot_every < 1:
            raise ConfigError("snapshot_every must be at least 1")
        if not self.secret:
            raise ConfigError("the cluster secret must not be empty")
        if self.storage is not None and self.storage not in ENGINE_MARKERS:
            choices = " or ".join(ENGINE_MARKERS)
            raise ConfigError(f"unknown storage engine {self.storage!r}: choose {choices}")

    def options(self) -> Options:
        """The core's options with this node's timing."""
        return replace(
            self.core,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            retransmit_ticks=max(self.core.retransmit_ticks, 2 * self.heartbeat_ticks),
        )
