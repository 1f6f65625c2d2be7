"""What the oracle is shown of each node: messages as they leave, votes, disks, logs.

The oracle (:mod:`pyxos.sim.oracle`) knows what is really chosen; the cluster only has to
tell it what each node claims and promises, at the moment it does. Those calls live here,
in one place, so the cluster's loop reads as the runtime's and the list of things checked
is written once: every message that carries a vote, a promise or a claim of choice; a
leader's own acceptance; every record a restart would apply; every snapshot installed;
every commit index a node reaches.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Accepted, Chosen, Commit, Message, Promise, Propose
from pyxos.core.ready import Persist
from pyxos.sim.oracle import Oracle
from pyxos.sim.sim_node import SimNode

_OBSERVED = frozenset({Propose, Accepted, Commit, Promise, Chosen})
"""The message kinds that tell the oracle something."""


class Witness:
    """Feeds one oracle from the nodes of one cluster."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle

    def sent(self, node: SimNode, message: Message) -> None:
        """Show the oracle a message as it leaves ``node``."""
        kind = type(message)
        if kind not in _OBSERVED:
            return
        oracle = self.oracle
        incarnation = node.replica.incarnation
        since = node.replica.member_since
        if isinstance(message, Propose):
            oracle.proposed(node.id, message.ballot, message.first_slot, message.values)
            oracle.commit_notice(node.id, message.ballot, message.commit_index)
        elif isinstance(message, Accepted):
            slots = range(message.first_slot, message.last_slot + 1)
            oracle.voted(node.id, incarnation, message.ballot, slots, since=since)
        elif isinstance(message, Commit):
            oracle.commit_notice(node.id, message.ballot, message.commit_index)
        elif isinstance(message, Promise):
            oracle.promised(node.id, incarnation, message.ballot, since)
            for sv in message.accepted:
                if sv.chosen:
                    oracle.claimed(node.id, sv.slot, sv.value, "promise")
        elif isinstance(message, Chosen):
            for i, value in enumerate(message.values):
                oracle.claimed(node.id, message.first_slot + i, value, "catch-up run")

    def own_vote(self, node: SimNode, ballot: Ballot, slot: int) -> None:
        """A leader's own acceptance is durable and counts now."""
        entry = node.replica.log.get(slot)
        known = self.oracle.proposals.get(slot, {})
        if ballot not in known and entry is not None and entry.ballot == ballot:
            # A lone node sends no Propose: its log is where the proposal shows.
            self.oracle.proposed(node.id, ballot, slot, (entry.value,))
        self.oracle.voted(
            node.id, node.replica.incarnation, ballot, range(slot, slot + 1), own=True
        )

    def disk(self, node: SimNode, written: Persist) -> None:
        """End to end: what a restart now would apply is chosen.

        A restarted node treats every durable record up to its durable commit index as
        chosen and applies it; so each one must hold the chosen value, whether the write
        that just landed stored the record or moved the commit index over it.
        """
        d = node.storage.durable
        floor = d.snapshot.last_slot if d.snapshot is not None else 0
        slots = {e.slot for e in written.entries if floor < e.slot <= d.commit_index}
        if written.commit_index is not None:
            start = max(floor, node.audited_commit)
            slots.update(range(start + 1, d.commit_index + 1))
            node.audited_commit = d.commit_index
        for slot in sorted(slots):
            entry = d.entries.get(slot)
            if entry is not None:
                self.oracle.applied(node.id, slot, entry.value, "holds on disk, as chosen,")

    def snapshot(self, node: SimNode) -> None:
        """Every slot a snapshot just installed on ``node`` holds must be chosen."""
        for slot, value in node.app.applied.items():
            self.oracle.applied(node.id, slot, value, "installed a snapshot holding")

    def commit_indexes(self, nodes: Iterable[SimNode]) -> str | None:
        """Each node's commit index is a claim that its log holds chosen values.

        Returns the oracle's first violation, if it has found one by now.
        """
        for node in nodes:
            r = node.replica
            if not node.up or r.commit_index <= node.checked_commit:
                continue
            for slot in range(max(node.checked_commit, r.snapshot_slot) + 1, r.commit_index + 1):
                entry = r.log.get(slot)
                if entry is not None:
                    self.oracle.claimed(node.id, slot, entry.value, "commit index")
            node.checked_commit = r.commit_index
        return self.oracle.violation
