"""Counters and status the transport exposes, for ``/metrics`` and ``/status``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class PeerCounters:
    """Monotonic counters for one peer. The live object is mutated in place by the transport;
    :meth:`Transport.stats` hands out copies."""

    sent: int = 0
    """Messages written to the outbound socket (not necessarily delivered)."""
    received: int = 0
    """Messages from this peer handed to ``on_message``."""
    dropped_queue_full: int = 0
    """``send`` calls refused because the peer's queue was full."""
    dropped_stale: int = 0
    """Queued messages discarded at (re)connection for being older than ``stale_after``."""
    dropped_too_large: int = 0
    """``send`` calls refused because the message exceeds ``max_message_size``."""
    connects: int = 0
    """Outbound connections that completed the handshake."""
    reconnects: int = 0
    """Of those, the ones after the first (the link had been lost)."""
    connect_failures: int = 0
    """Outbound attempts that failed to connect (refused, unreachable, timeout)."""
    rejected_handshakes: Counter[str] = field(default_factory=Counter)
    """Handshakes with this (claimed) peer that failed, in either direction, by reason."""
    closed: Counter[str] = field(default_factory=Counter)
    """Authenticated connections with this peer that ended, by reason."""
    callback_errors: int = 0
    """Exceptions raised by ``on_message`` for this peer's messages (logged, not fatal)."""

    def copy(self) -> PeerCounters:
        """A snapshot that later traffic does not change."""
        return PeerCounters(
            self.sent,
            self.received,
            self.dropped_queue_full,
            self.dropped_stale,
            self.dropped_too_large,
            self.connects,
            self.reconnects,
            self.connect_failures,
            Counter(self.rejected_handshakes),
            Counter(self.closed),
            self.callback_errors,
        )


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """What ``/status`` shows for a peer."""

    connected: bool
    """An authenticated outbound connection is up: ``send`` is being delivered."""
    inbound_connected: bool
    """The peer has an authenticated connection to us."""
    last_received_monotonic: float | None
    """``time.monotonic()`` (the transport's clock) of the last frame from the peer, if any."""
    queued: int
    """Messages waiting to be written to the peer."""


@dataclass(frozen=True, slots=True)
class TransportStats:
    """A snapshot of every counter of one transport."""

    peers: dict[int, PeerCounters]
    rejected_handshakes: dict[str, int]
    """Every failed inbound or outbound handshake by reason, including those where the
    other side never named a member id (random bytes, a non-member)."""
    handler_errors: int
    """Unexpected exceptions caught at the top of a connection handler; should stay 0."""
    dropped_unknown_destination: int
    """``send`` calls to this node itself or to a non-member; should stay 0."""
