"""Deliberately broken replicas, to prove that the simulator's invariants can fail."""

from __future__ import annotations

from pyxos.core import Replica
from pyxos.core.ballot import ZERO
from pyxos.core.messages import Chosen, Promise, Propose, SlotValue
from pyxos.core.ready import Ready
from pyxos.core.replica import Role


class AcceptsBelowPromise(Replica):
    """An acceptor that forgets to compare a proposal's ballot with its promise."""

    def _on_propose(self, m: Propose) -> None:
        saved = self.promised
        if m.ballot < saved:
            self.promised = m.ballot
        super()._on_propose(m)
        self.promised = max(saved, self.promised)


class AppliesOutOfOrder(Replica):
    """A learner that hands chosen slots to the application in the wrong order."""

    def ready(self) -> Ready:
        ready = super().ready()
        ready.committed.reverse()
        return ready


class SkipsReproposal(Replica):
    """A new leader that ignores the values its promises reported (fills only no-ops)."""

    def _maybe_lead(self) -> None:
        for k, p in list(self._promises.items()):
            self._promises[k] = Promise(p.src, p.ballot, (), p.commit_index, p.snapshot_slot)
        super()._maybe_lead()


class ReadsWithoutQuorum(Replica):
    """Serves reads at its local commit index, without confirming it still leads."""

    def read_index(self, token: int) -> None:
        self._out.reads.append((token, self.commit_index))


class TrustsChosen(Replica):
    """Learns from any ``Chosen`` in any role, ignoring its ballot (the review's first
    hole): a stale leader then commits a learned value under its own ballot, and may
    propose over a slot it learned (the guard against that is off too, as it was)."""

    def _check_open_slot(self, slot: int) -> None:
        pass

    def _on_chosen(self, m: Chosen) -> None:
        changed = False
        for i, value in enumerate(m.values):
            slot = m.first_slot + i
            if slot <= self.snapshot_slot:
                continue
            old = self.log.get(slot)
            if old is not None and old.chosen:
                continue
            ballot = old.ballot if old is not None else ZERO
            self._store(SlotValue(slot, ballot, value, True))
            self.max_slot = max(self.max_slot, slot)
            changed = True
        if changed:
            self._advance_commit()
        if self.role is Role.LEADER:
            self._after_commit()
