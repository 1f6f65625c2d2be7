"""Simulated stable storage that forgets what was not synced when its node crashes.

Writes land in an unsynced buffer, one batch per ``Ready``; ``sync`` makes them durable.
A crash keeps a random prefix of the unsynced batches, which is what an embedded store
with transactional, ordered commits (LMDB, SQLite WAL) can leave behind after power loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import HardState, Persist
from pyxos.core.replica import Rng


@dataclass(slots=True)
class _Durable:
    promised: Ballot = ZERO
    entries: dict[int, SlotValue] = field(default_factory=dict)
    commit_index: int = 0
    snapshot: tuple[int, bytes] | None = None
    """``(last_slot, state machine bytes)`` of the newest snapshot."""

    def apply(self, p: Persist) -> None:
        if p.promised is not None:
            self.promised = p.promised
        for e in p.entries:
            self.entries[e.slot] = e
        if p.snapshot is not None:
            self.set_snapshot(p.snapshot.last_slot, p.snapshot.data)
        if p.compact_through is not None:
            for slot in [s for s in self.entries if s <= p.compact_through]:
                del self.entries[slot]
        if p.commit_index is not None:
            self.commit_index = max(self.commit_index, p.commit_index)

    def set_snapshot(self, last_slot: int, data: bytes) -> None:
        if self.snapshot is None or last_slot > self.snapshot[0]:
            self.snapshot = (last_slot, data)


@dataclass(slots=True)
class SimStorage:
    """One node's disk. ``forget_promises`` is a deliberate bug for tests of the checker."""

    forget_promises: bool = False
    durable: _Durable = field(default_factory=_Durable)
    unsynced: list[Persist] = field(default_factory=list)
    syncs: int = 0

    def write(self, persist: Persist) -> None:
        if not persist.empty():
            self.unsynced.append(persist)

    def sync(self) -> None:
        for p in self.unsynced:
            self.durable.apply(p)
        self.unsynced.clear()
        self.syncs += 1

    def save_app_snapshot(self, last_slot: int, data: bytes) -> None:
        """The driver's own snapshot of its state machine, written durably at once."""
        self.durable.set_snapshot(last_slot, data)

    def crash(self, rng: Rng) -> None:
        """Power loss: a random prefix of the unsynced batches survives."""
        keep = rng.randrange(0, len(self.unsynced) + 1)
        for p in self.unsynced[:keep]:
            self.durable.apply(p)
        self.unsynced.clear()
        if self.forget_promises:
            self.durable.promised = ZERO

    def recover(self) -> tuple[HardState, tuple[int, bytes] | None]:
        """What a restarted node reads back: its hard state and newest snapshot."""
        d = self.durable
        snapshot = d.snapshot
        snap_slot = snapshot[0] if snapshot is not None else 0
        entries = [e for s, e in sorted(d.entries.items()) if s > snap_slot]
        # The lazily written commit index may exceed what a torn crash kept: trim it to
        # the contiguous entries actually present.
        commit = max(d.commit_index, snap_slot)
        present = snap_slot
        while present < commit and (present + 1) in d.entries:
            present += 1
        state = HardState(d.promised, entries, min(commit, present), snap_slot)
        return state, snapshot
