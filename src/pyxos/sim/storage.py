"""Simulated stable storage with the recovery contract of the real stores.

One write is in flight at a time (the shared driver's group commit); it is a transaction,
durable once ``sync`` returns. Power loss keeps the write in flight or drops it, as
SQLite's WAL and LMDB's meta pages do, or (a fault of its own) tears it: part of it
lands, with a record that fails its checksum. Records at rest can rot (a flipped bit).
Recovery then does what the real stores do: it finds the bad record and raises
:class:`SimCorruption`, and the node's driver moves the data dir aside and starts a fresh
one under a new incarnation, which is the disk-loss path of the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.core.replica import Rng


class SimCorruption(Exception):
    """Recovery found a damaged record (the real stores' ``CorruptStorageError``)."""


class SimWriteError(Exception):
    """A write or fsync failed (the real stores' fatal ``StorageError``)."""


@dataclass(slots=True)
class SimSnapshot:
    last_slot: int
    data: bytes
    ballot: Ballot
    """The promise floor: every slot in it was chosen at or below this ballot."""


@dataclass(slots=True)
class _Durable:
    incarnation: int
    promised: Ballot = ZERO
    entries: dict[int, SlotValue] = field(default_factory=dict)
    commit_index: int = 0
    snapshot: SimSnapshot | None = None
    standing: Standing = Standing.JOINING
    superseded: int | None = None
    registry: dict[int, int] = field(default_factory=dict)
    damaged: str | None = None
    """Which record fails its checksum, if one does."""

    def apply(self, p: Persist) -> None:
        if p.promised is not None:
            self.promised = p.promised
        for e in p.entries:
            self.entries[e.slot] = e
        if p.snapshot is not None:
            s = p.snapshot
            self.set_snapshot(SimSnapshot(s.last_slot, s.data, s.ballot))
        if p.compact_through is not None:
            for slot in [s for s in self.entries if s <= p.compact_through]:
                del self.entries[slot]
        if p.commit_index is not None:
            self.commit_index = max(self.commit_index, p.commit_index)
        if p.standing is not None:
            self.standing = p.standing
            self.superseded = p.superseded
        for node, incarnation in p.registry.items():
            self.registry.setdefault(node, incarnation)

    def set_snapshot(self, snapshot: SimSnapshot) -> None:
        if self.snapshot is None or snapshot.last_slot > self.snapshot.last_slot:
            self.snapshot = snapshot


@dataclass(slots=True)
class SimStorage:
    """One node's data dir. ``forget_promises`` is a deliberate bug for checker tests."""

    incarnation: int
    forget_promises: bool = False
    durable: _Durable = field(init=False)
    in_flight: Persist | None = None
    syncs: int = 0

    def __post_init__(self) -> None:
        self.durable = _Durable(self.incarnation)

    def write(self, persist: Persist) -> None:
        """Start a write (the driver has at most one in flight)."""
        assert self.in_flight is None, "one write at a time"
        self.in_flight = persist

    def sync(self) -> None:
        """The write in flight is durable."""
        if self.in_flight is not None:
            self.durable.apply(self.in_flight)
            self.in_flight = None
        self.syncs += 1

    def fail_write(self) -> None:
        """The write in flight failed: none of it is on disk."""
        self.in_flight = None

    def save_app_snapshot(self, last_slot: int, data: bytes, ballot: Ballot) -> None:
        """The driver's own snapshot of its state machine, written durably at once."""
        self.durable.set_snapshot(SimSnapshot(last_slot, data, ballot))

    def crash(self, rng: Rng, *, tear: bool = False) -> None:
        """Power loss: the write in flight lands whole or not at all; or it is torn."""
        flight, self.in_flight = self.in_flight, None
        if flight is not None:
            if tear and flight.entries:
                # Part of the transaction reached the disk, its last record half written.
                keep = rng.randrange(0, len(flight.entries))
                for e in flight.entries[:keep]:
                    self.durable.entries[e.slot] = e
                self.durable.damaged = f"log record of slot {flight.entries[keep].slot} (torn)"
            elif rng.randrange(0, 2):
                self.durable.apply(flight)
        if self.forget_promises:
            self.durable.promised = ZERO

    def rot(self, rng: Rng) -> str:
        """Flip a bit in one record at rest; returns which."""
        d = self.durable
        names = ["identity", "promised", "commit index"]
        names += [f"log record of slot {s}" for s in sorted(d.entries)]
        what = names[rng.randrange(0, len(names))]
        d.damaged = what
        return what

    def recover(self) -> tuple[HardState, SimSnapshot | None]:
        """What a restarted node reads back, checked as the real stores check it."""
        d = self.durable
        if d.damaged is not None:
            raise SimCorruption(f"{d.damaged} fails its checksum")
        snapshot = d.snapshot
        snap_slot = snapshot.last_slot if snapshot is not None else 0
        entries = [e for s, e in sorted(d.entries.items()) if s > snap_slot]
        commit = max(d.commit_index, snap_slot)
        for slot in range(snap_slot + 1, commit + 1):
            if slot not in d.entries:
                raise SimCorruption(f"commit index {commit} covers missing log slot {slot}")
        promised = d.promised
        if snapshot is not None:
            promised = max(promised, snapshot.ballot)
        state = HardState(
            promised,
            entries,
            commit,
            snap_slot,
            standing=d.standing,
            incarnation=d.incarnation,
            registry=dict(d.registry),
            superseded=d.superseded,
        )
        return state, snapshot
