"""Deliberately broken replicas, to prove that the simulator's invariants can fail."""

from __future__ import annotations

from pyxos.core import Replica
from pyxos.core.messages import Promise, Propose
from pyxos.core.ready import Ready


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
