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

from dataclasses import dataclass, field

from pyxos.core.ballot import Ballot
from pyxos.core.messages import InstallSnapshot, Message, SlotValue, Value


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
    must_sync: bool = False

    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return (
            self.promised is None
            and not self.entries
            and self.commit_index is None
            and self.snapshot is None
            and self.compact_through is None
        )


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


@dataclass(slots=True)
class HardState:
    """What a replica recovers from stable storage after a restart."""

    promised: Ballot
    entries: list[SlotValue]
    commit_index: int
    snapshot_slot: int
    members: tuple[int, ...] | None = None
