"""How one batch of the core's writes (a ``Persist``) changes a data dir: decided once.

:func:`plan_write` turns a ``Persist`` into a :class:`WritePlan`, the records to write
in one transaction, by the rules every store shares: a snapshot counts only if it is
newer than the current one; entries at or below the (new) snapshot are moot; compaction
may not reach past the snapshot (the log below would be lost with nothing covering it);
a newer snapshot compacts everything it covers; a registration overwrites the node's
entry and incarnation ``0`` deletes it; a membership history, when given, replaces the
stored one whole.

The real engines carry a plan out in one transaction; :class:`DurableImage`, a plain
in-memory picture of a data dir, applies it to dictionaries, for the model store, the
simulator and the tests' network. :meth:`DurableImage.recover` is the recovery contract
the engines' ``load`` keeps too: a commit index over a missing slot is damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.membership import newest
from pyxos.core.messages import InstallSnapshot, SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.storage.errors import CorruptStorageError


@dataclass(frozen=True, slots=True)
class WritePlan:
    """The records one batch writes, in one transaction."""

    promised: Ballot | None
    entries: tuple[SlotValue, ...]
    """To upsert: only those above the snapshot (the new one, if any)."""
    commit_index: int | None
    snapshot: InstallSnapshot | None
    """A snapshot newer than the current one, to install (else ``None``)."""
    delete_through: int
    """Delete every log record at or below this slot (0: none)."""
    standing: tuple[Standing, int | None] | None
    registry: dict[int, int]
    """Node -> incarnation to record, overwriting; ``0`` deletes the node's entry."""
    membership: bytes | None
    """The membership history to store in place of the old one (``None``: keep it)."""

    @property
    def floor(self) -> int:
        """The snapshot slot after this batch (``None`` snapshot: unchanged, so 0 here)."""
        return self.snapshot.last_slot if self.snapshot is not None else 0


def update_registry(registry: dict[int, int], changes: dict[int, int]) -> None:
    """Apply a batch's registrations to ``registry`` in place: a later incarnation
    overwrites the node's entry, ``0`` forgets it (the node was added to the cluster
    again, and registers anew)."""
    for node, incarnation in changes.items():
        if incarnation == 0:
            registry.pop(node, None)
        else:
            registry[node] = incarnation


def plan_write(persist: Persist, snapshot_slot: int) -> WritePlan:
    """What ``persist`` writes to a data dir whose snapshot ends at ``snapshot_slot``.

    Raises ``ValueError`` (writing nothing) if ``compact_through`` is beyond the snapshot.
    """
    snap = persist.snapshot
    if snap is not None and snap.last_slot <= snapshot_slot:
        snap = None  # installed already (e.g. streamed in) or older: nothing to do
    floor = snap.last_slot if snap is not None else snapshot_slot
    through = persist.compact_through
    if through is not None and through > floor:
        raise ValueError(f"compact_through {through} is beyond the snapshot slot {floor}")
    standing = persist.standing
    return WritePlan(
        promised=persist.promised,
        entries=tuple(e for e in persist.entries if e.slot > floor),
        commit_index=persist.commit_index,
        snapshot=snap,
        delete_through=max(through or 0, snap.last_slot if snap is not None else 0),
        standing=(standing, persist.superseded) if standing is not None else None,
        registry=dict(persist.registry),
        membership=persist.membership,
    )


@dataclass(slots=True)
class DurableImage:
    """A data dir's records as plain values: what models of a disk hold."""

    incarnation: int
    promised: Ballot = ZERO
    entries: dict[int, SlotValue] = field(default_factory=dict)
    commit_index: int = 0
    snapshot: InstallSnapshot | None = None
    """The current snapshot (its ``data`` and promise floor ``ballot``)."""
    standing: tuple[Standing, int | None] = (Standing.JOINING, None)
    registry: dict[int, int] = field(default_factory=dict)
    membership: bytes | None = None
    """The membership history last written (``None``: never written)."""

    @property
    def snapshot_slot(self) -> int:
        return self.snapshot.last_slot if self.snapshot is not None else 0

    def write(self, persist: Persist) -> None:
        """Apply ``persist`` by the shared rules (one call, one transaction)."""
        self.apply(plan_write(persist, self.snapshot_slot))

    def apply(self, plan: WritePlan) -> None:
        if plan.standing is not None:
            self.standing = plan.standing
        update_registry(self.registry, plan.registry)
        if plan.membership is not None:
            self.membership = plan.membership
        if plan.promised is not None:
            self.promised = plan.promised
        for entry in plan.entries:
            self.entries[entry.slot] = entry
        if plan.commit_index is not None:
            self.commit_index = plan.commit_index
        if plan.snapshot is not None:
            self.snapshot = plan.snapshot
        if plan.delete_through > 0:
            for slot in [s for s in self.entries if s <= plan.delete_through]:
                del self.entries[slot]

    def install(self, snapshot: InstallSnapshot) -> None:
        """A snapshot saved or received outside a batch (durable at once), if newer."""
        if snapshot.last_slot > self.snapshot_slot:
            self.apply(plan_write(Persist(snapshot=snapshot), self.snapshot_slot))

    def copy(self) -> DurableImage:
        return DurableImage(
            self.incarnation,
            self.promised,
            dict(self.entries),
            self.commit_index,
            self.snapshot,
            self.standing,
            dict(self.registry),
            self.membership,
        )

    def recover(self) -> HardState:
        """What a node restarts from; :class:`CorruptStorageError` on a gap under the
        commit index, as the engines' ``load`` reports it."""
        floor = self.snapshot_slot
        entries = [e for s, e in sorted(self.entries.items()) if s > floor]
        commit = self.commit_index
        for slot in range(floor + 1, commit + 1):
            if slot not in self.entries:
                raise CorruptStorageError(f"commit index {commit} covers missing log slot {slot}")
        promised = self.promised
        if self.snapshot is not None:
            promised = max(promised, self.snapshot.ballot)
        return HardState(
            promised,
            entries,
            commit,
            floor,
            members=self.snapshot.members if self.snapshot is not None else None,
            standing=self.standing[0],
            incarnation=self.incarnation,
            registry=dict(self.registry),
            superseded=self.standing[1],
            membership=newest(
                self.membership, self.snapshot.membership if self.snapshot is not None else None
            ),
        )
