"""Tunables of the peer transport, with defaults for a LAN cluster and the reasons for them."""

from __future__ import annotations

from dataclasses import dataclass

from pyxos.transport.framing import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME
from pyxos.transport.tls import TLSContexts


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Limits and timers of one :class:`~pyxos.transport.Transport`.

    All durations are in seconds. Every node of a cluster should use the same values; at
    least ``chunk_size`` must fit in every receiver's ``max_frame_size``.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME
    """Largest frame accepted after the handshake, checked from the length prefix alone."""
    chunk_size: int = 1024 * 1024
    """Messages whose encoding is larger are sent as chunk frames of this size (snapshots)."""
    max_message_size: int = 1024 * 1024 * 1024
    """Largest message reassembled from chunks, and largest one ``send`` accepts."""
    queue_limit: int = 10_000
    """Messages waiting per peer; beyond it ``send`` drops the new message (see ``send``)."""
    stale_after: float = 2.0
    """Queued messages older than this are dropped when a connection is (re)established.

    A message that waited this long (about two election timeouts) was written for a state
    of the cluster that has likely moved on; the protocol retransmits what still matters,
    and a flood of stale Proposes and heartbeats after a partition heals only delays the
    fresh ones behind them.
    """
    ping_interval: float = 0.2
    """A connection that has sent nothing for this long sends a ping."""
    idle_timeout: float = 1.0
    """A connection that has received nothing for this long is closed (and re-dialled).

    A partitioned TCP connection can stay silent without any error for minutes and then
    deliver stale bytes after the partition heals; closing it bounds how long a node keeps
    believing in a dead link.
    """
    handshake_timeout: float = 2.0
    """A connection that has not completed the handshake by then is closed."""
    connect_timeout: float = 2.0
    backoff_initial: float = 0.05
    """First reconnect delay; it doubles per failed attempt, with jitter, up to ``backoff_max``."""
    backoff_max: float = 2.0
    write_batch_bytes: int = 256 * 1024
    """Queued frames are joined into writes of about this size, one ``drain`` per write."""
    bind_host: str | None = None
    """Listen on this host instead of the one configured for this node (e.g. ``0.0.0.0``)."""
    tls: TLSContexts | None = None
    """Mutual TLS on every peer link (``--tls-cluster yes``): each side presents its node
    certificate, verifies the other's against the CA and checks that it names the node
    it claims to be (:mod:`pyxos.transport.certnames`); the HMAC handshake still runs
    inside. ``None``: plain TCP, authenticated by the HMAC handshake alone."""

    def __post_init__(self) -> None:
        if self.max_frame_size < HANDSHAKE_MAX_FRAME:
            raise ValueError(f"max_frame_size must be >= {HANDSHAKE_MAX_FRAME}")
        if not 64 <= self.chunk_size <= self.max_frame_size - 64:
            raise ValueError("chunk_size must be >= 64 and leave 64 bytes of max_frame_size")
        if self.max_message_size < self.chunk_size:
            raise ValueError("max_message_size must be >= chunk_size")
        if self.queue_limit < 1:
            raise ValueError("queue_limit must be >= 1")
        if not 0 < self.ping_interval < self.idle_timeout:
            raise ValueError("need 0 < ping_interval < idle_timeout")
        for name in ("stale_after", "handshake_timeout", "connect_timeout", "backoff_initial"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        if self.write_batch_bytes < 1:
            raise ValueError("write_batch_bytes must be >= 1")
        if self.tls is not None and "peer" not in self.tls.roles:
            raise ValueError("tls contexts were built without the peer role")
