"""What the client port knows about itself: its limits, its counters, and a read view of it.

INFO and CONFIG read (and CONFIG SET changes) a few facts of the running client port. They
take a :class:`ClientPort`, the protocol naming exactly those facts, rather than the
:class:`~pyxos.server.redis_server.RedisServer` class, so that the server can use them
without the two modules importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyxos.kv import KVStateMachine
    from pyxos.runtime.node import Node

__all__ = ["ClientPort", "ServerLimits", "ServerStats"]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection and per-server limits; each is answered with an error, not a crash."""

    max_clients: int = 10_000
    max_bulk_len: int = 64 * 1024 * 1024
    max_args: int = 1024 * 1024
    max_pipeline: int = 10_000
    """Commands one connection may have in flight before the server stops reading it."""
    timeout: float = 5.0
    """How long a command may wait for a leader or for its slot before an error."""
    expire_interval: float = 0.1
    """How often the leader looks for keys whose time came, proposing a clock tick that
    deletes them (so an idle cluster still expires keys)."""


@dataclass
class ServerStats:
    """Counters for INFO stats, errorstats and commandstats (this node's clients)."""

    connections: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    unexpected_errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)

    def count_error(self, reply: bytes) -> None:
        self.errors += 1
        code = reply[1:].split(b" ", 1)[0].split(b"\r", 1)[0].decode("utf-8", "replace")
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def reset(self) -> None:
        self.calls.clear()
        self.rejected.clear()
        self.error_codes.clear()
        self.errors = self.unexpected_errors = 0


class ClientPort(Protocol):
    """The facts of a running client port that INFO and CONFIG use."""

    node: Node
    kv: KVStateMachine
    host: str
    port: int
    password: bytes | None
    limits: ServerLimits
    stats: ServerStats
    last_save: int
    address: tuple[str, int] | None

    @property
    def client_count(self) -> int:
        """Open client connections."""
        ...
