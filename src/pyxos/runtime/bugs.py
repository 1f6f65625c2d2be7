"""Deliberately broken behaviour, for proving that the chaos checker can fail.

Switched on only by ``pyxos serve --test-bug NAME`` (a hidden flag the chaos tests use);
never on in normal operation. Each bug breaks one rule a correct node must keep:

- ``ack-before-fsync``: followers send Accepted/Promise before their write is durable
  (the write is delayed, so a crash in between forgets what was acknowledged);
- ``stale-reads``: reads are served from local state without a read index;
- ``skip-reproposal``: a new leader ignores the values its phase-1 promises reported;
- ``skip-fsync``: the storage engine never fsyncs (SQLite ``synchronous=OFF``, LMDB
  without sync), so everything is written and acknowledged but only a power cut, not a
  process crash, loses it.
"""

from __future__ import annotations

from pyxos.core.messages import Promise
from pyxos.core.replica import Replica

BUGS = ("ack-before-fsync", "stale-reads", "skip-reproposal", "skip-fsync")


class SkipsReproposal(Replica):
    """Fills every slot it does not know to be chosen with a no-op after phase 1."""

    def _maybe_lead(self) -> None:
        for k, p in list(self._promises.items()):
            self._promises[k] = Promise(p.src, p.ballot, (), p.commit_index, p.snapshot_slot)
        top = self.max_slot
        self.max_slot = self.commit_index  # hide our own accepted values too
        super()._maybe_lead()
        self.max_slot = max(self.max_slot, top)
