"""What the core asks its driver to do, in order.

A driver (the simulator or the asyncio runtime) loops:

1. ``ready = replica.ready()``;
2. send ``ready.messages`` (they promise nothing about local state, so they may leave at
   once, in parallel with the disk write);
3. write ``ready.persist`` to stable storage and, when ``persist.must_sync``, fsync it:
   one sync for the whole batch (group commit);
4. only then send ``ready.persisted_messages`` (Promises and Accepteds: they promise what
   was just written, so they must never leave before it is durable);
5. restore ``ready.snapshot_install`` if set, then apply ``ready.committed`` to the state
   machine in order, then serve ``ready.reads`` once applied through their index;
6. send a snapshot to each peer in ``ready.snapshots_to_send``;
7. ``replica.advance(ready)``.

A driver may also pipeline: ``advance(ready, persisted=False)`` right after handing the
write to its I/O thread, take the next ``Ready`` while the write is in flight, and call
``replica.persisted(ready)`` (then send ``persisted_messages``) once that write is durable.
Writes must become durable in the order their batches were taken.

The replica may be stepped between ``ready()`` and ``advance()``: what happens meanwhile
goes into the next ``Ready``, which is how batches grow while a sync is in flight.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.membership import Change
from pyxos.core.messages import InstallSnapshot, Message, SlotValue, Value


class Standing(enum.Enum):
    """Whether this node's data dir may vote (durable; see docs/PROTOCOL.md, disk loss)."""

    VOTER = "voter"
    """Registered by a majority of the peers: promises and accepts."""
    JOINING = "joining"
    """A new data dir, not yet registered: learns, forwards, never votes."""
    LEARNER = "learner"
    """A peer holds an older data dir of this node: this one may have lost promises and
    acceptances, so it never votes (until a membership change re-adds it)."""


@dataclass(slots=True)
class SnapshotMeta:
    """Where a snapshot ends: slots up to ``last_slot`` are inside it and compacted."""

    last_slot: int
    members: tuple[int, ...]


@dataclass(slots=True)
class Persist:
    """State changes to write in one transaction.

    ``entries`` are per-slot acceptor records (accepted, or learned chosen) to upsert.
    ``commit_index`` is written lazily (it can be recomputed from peers) but in the same
    transaction, so a recovered commit index never covers an entry that was not written.
    ``compact_through`` deletes entries at or below it (a snapshot now covers them).
    """

    promised: Ballot | None = None
    entries: list[SlotValue] = field(default_factory=list)
    commit_index: int | None = None
    snapshot: InstallSnapshot | None = None
    compact_through: int | None = None
    standing: Standing | None = None
    """This node's new standing (with ``superseded`` when it turns learner)."""
    superseded: int | None = None
    """The older incarnation of this node that a peer holds, when it turns learner."""
    registry: dict[int, int] = field(default_factory=dict)
    """Peers' data-dir incarnations to record: node -> incarnation, where ``0`` forgets
    the node's entry (it was added to the cluster again, and registers anew)."""
    membership: bytes | None = None
    """The cluster's membership history, whole (:mod:`pyxos.core.membership`), written
    when a chosen change is learned; a later one replaces it."""
    must_sync: bool = False

    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return (
            self.promised is None
            and not self.entries
            and self.commit_index is None
            and self.snapshot is None
            and self.compact_through is None
            and self.standing is None
            and not self.registry
            and self.membership is None
        )

    def merge(self, later: Persist) -> None:
        """Fold ``later`` into this batch, as one transaction written in their order.

        The one rule every store, the simulator and the runtime's group commit share: the
        later batch wins per field and per slot, the commit index and compaction only
        move forward, and the registry only gains entries.
        """
        if later.promised is not None:
            self.promised = later.promised
        self.entries.extend(later.entries)
        if later.commit_index is not None:
            self.commit_index = max(self.commit_index or 0, later.commit_index)
        snap = later.snapshot
        if snap is not None and (self.snapshot is None or snap.last_slot > self.snapshot.last_slot):
            self.snapshot = snap
        if later.compact_through is not None:
            self.compact_through = max(self.compact_through or 0, later.compact_through)
        if later.standing is not None:
            self.standing = later.standing
            self.superseded = later.superseded
        self.registry.update(later.registry)
        if later.membership is not None:
            self.membership = later.membership
        self.must_sync |= later.must_sync


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver; see the module docstring for the order."""

    messages: list[tuple[int, Message]] = field(default_factory=list)
    persist: Persist = field(default_factory=Persist)
    persisted_messages: list[tuple[int, Message]] = field(default_factory=list)
    snapshot_install: InstallSnapshot | None = None
    committed: list[tuple[int, Value]] = field(default_factory=list)
    reads: list[tuple[int, int]] = field(default_factory=list)
    """``(token, index)``: the read may be served once the node applied through ``index``."""
    failed_reads: list[int] = field(default_factory=list)
    """Tokens that cannot be served here (no leader, or leadership lost): retry elsewhere."""
    snapshots_to_send: list[int] = field(default_factory=list)
    self_accepts: list[tuple[Ballot, int]] = field(default_factory=list)
    """The core's own: slots this node accepted in the batch, counted at ``persisted``."""
    self_promise: Ballot | None = None
    """The core's own: this candidate's promise to itself, counted at ``persisted``."""
    changes: list[tuple[int, Change, str | None]] = field(default_factory=list)
    """Membership changes learned chosen: (slot, change, why it did not apply or None)."""
    change_errors: list[tuple[int, str]] = field(default_factory=list)
    """(token, error): a membership change or leader transfer asked for here was refused."""
    removed: str | None = None
    """Set once: this node learned it is no longer a member (the driver stops it)."""


@dataclass(slots=True)
class HardState:
    """What a replica recovers from stable storage after a restart.

    The defaults describe a voter with nothing lost (tests build replicas that way); a
    store hands a brand-new data dir over as ``JOINING`` with its fresh ``incarnation``.
    ``promised`` must already include the promise floor of the snapshot, if any.
    """

    promised: Ballot
    entries: list[SlotValue]
    commit_index: int
    snapshot_slot: int
    members: tuple[int, ...] | None = None
    standing: Standing = Standing.VOTER
    incarnation: int = 0
    """This data dir's random identity, drawn when it was created."""
    registry: dict[int, int] = field(default_factory=dict)
    """Peers' incarnations this node recorded (see :class:`~pyxos.core.messages.Join`)."""
    superseded: int | None = None
    membership: bytes | None = None
    """The membership history last written (``None``: the founding one, from the
    command line), replayed forward over the recovered log."""

    @classmethod
    def fresh(cls, incarnation: int) -> HardState:
        """The state of a data dir created just now: nothing promised, not yet a voter."""
        return cls(ZERO, [], 0, 0, standing=Standing.JOINING, incarnation=incarnation)
