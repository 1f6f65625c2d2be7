"""What a leader tracks: each follower's progress, and each slot it has in flight.

etcd keeps the same two things in its ``tracker`` package; here they are small records
the leader's handlers update, kept apart so the leader's logic reads as logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.messages import Value


@dataclass(slots=True)
class PeerProgress:
    """What a leader knows of one follower."""

    commit_index: int = 0
    """Its latest report (not the highest: a restarted follower may have lost the lazily
    written tail of its commit index and needs those slots again)."""
    read_seq: int = 0
    """The newest heartbeat round it confirmed (only a voter's counts)."""
    catchup_sent_to: int = 0
    catchup_tick: int = -(10**9)
    snapshot_tick: int = -(10**9)


@dataclass(slots=True)
class Inflight:
    """A slot a leader proposed and has not yet seen chosen."""

    value: Value
    acks: set[int]
    sent_tick: int


@dataclass(slots=True)
class ReadRound:
    """Reads waiting for a quorum to confirm heartbeat round ``seq`` (``reads``)."""

    seq: int
    index: int
    local: list[int] = field(default_factory=list)
    remote: dict[int, list[int]] = field(default_factory=dict)
