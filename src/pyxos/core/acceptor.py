"""The acceptor and learner: phase 2 votes, commit notices, catch-up and snapshots.

An acceptor accepts a proposal at a ballot at least its promise (and says so only once
the value is durable); a follower learns a slot is chosen when the leader's commit index
covers it and it accepted that slot at the leader's ballot. Slots it missed come through
catch-up runs (``Chosen``) or a snapshot, which it learns only under the sender's
promise (docs/PROTOCOL.md, "Learning from peers"). A node that may not vote (a learner)
does all of this but never sends a vote or a rejection.
"""

from __future__ import annotations

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.base import ReplicaBase
from pyxos.core.membership import History
from pyxos.core.messages import (
    Accepted,
    Chosen,
    Commit,
    CommitAck,
    InstallSnapshot,
    Propose,
    Reject,
    SlotValue,
    SnapshotRequest,
)
from pyxos.core.options import Role


class AcceptorMixin(ReplicaBase):
    """Phase 2 on the acceptor's side, and everything a follower learns from."""

    def _on_propose(self, m: Propose) -> None:
        self._see(m.ballot)
        if m.ballot < self.promised and not self.bugs.accept_below_promise:
            self._reject(m.src, m.ballot)
            return
        self._follow(m.src, m.ballot)
        last = m.first_slot + len(m.values) - 1
        conflict = False
        for i, value in enumerate(m.values):
            slot = m.first_slot + i
            if slot <= self.snapshot_slot:
                continue
            old = self.log.get(slot)
            if old is not None and old.chosen:
                # We promised at least the ballot this slot was chosen at (the Chosen
                # rule), so a proposal we may accept carries the chosen value (Paxos P2c).
                # Keep it, and record the ballot so our acceptance never goes backwards.
                if old.value != value:
                    conflict = True
                elif old.ballot < m.ballot:
                    self._store(SlotValue(slot, m.ballot, old.value, True))
                continue
            self._store(SlotValue(slot, m.ballot, value))
        self.max_slot = max(self.max_slot, last)
        if conflict:
            # Only a broken proposer gets here; acknowledging would vouch for a value we
            # do not hold. Say nothing: it never gathers a quorum with our vote.
            self.coverage["propose_conflicts_chosen"] += 1
        elif self.voter:
            first = max(m.first_slot, self.member_since)
            if first <= last:
                self._send_persisted(m.src, Accepted(self.id, m.ballot, first, last))
        self._learn_commit(m.ballot, m.commit_index)

    def _reject(self, dst: int, ballot: Ballot) -> None:
        """NACK a proposer below our promise; a non-voter promised nothing, so it is quiet."""
        if self.voter:
            self.coverage["reject_sent"] += 1
            self._send(dst, Reject(self.id, ballot, self.promised))

    def _on_commit(self, m: Commit) -> None:
        self._see(m.ballot)
        if m.ballot < self.promised:
            self._reject(m.src, m.ballot)
            return
        self._follow(m.src, m.ballot)
        self._learn_commit(m.ballot, m.commit_index)
        if m.read_seq != self._acked_read_seq or self.commit_index < m.commit_index:
            # A bare commit notice (same heartbeat round, nothing missing here) needs no
            # answer; a new round (reads, liveness) or a gap to fill does.
            self._acked_read_seq = m.read_seq
            self._send(m.src, self._commit_ack(m.ballot, m.read_seq, m.commit_index))

    def _commit_ack(self, ballot: Ballot, read_seq: int, leader_commit: int = -1) -> CommitAck:
        # Our promise vouches for a leader only in slots where this id is us.
        voter = self.voter and leader_commit + 1 >= self.member_since
        return CommitAck(self.id, ballot, self.commit_index, read_seq, voter)

    def _follow(self, leader: int, ballot: Ballot) -> None:
        """A leader with a ballot at least our promise is alive: follow it."""
        if self.role is not Role.FOLLOWER or self.leader != leader:
            self._become_follower(leader)
        self._leader_contact = 0
        self._election_elapsed = 0
        self._backoff = 0
        if ballot > self.promised:
            # Raising the promise is what makes us reject the deposed leader from now on.
            self._set_promised(ballot)

    def _learn_commit(self, ballot: Ballot, commit_index: int) -> None:
        """Slots up to ``commit_index`` are chosen; ours are, if accepted at ``ballot``."""
        top = min(commit_index, self.max_slot)
        if ballot != self._learn_ballot:
            self._learn_ballot, self._learn_from = ballot, 0
        start = max(self.commit_index + 1, self._learn_from)
        self._learn_from = max(self._learn_from, top + 1)
        changed = False
        for slot in range(start, top + 1):
            entry = self.log.get(slot)
            if entry is not None and not entry.chosen and entry.ballot == ballot:
                self.log[slot] = SlotValue(slot, entry.ballot, entry.value, True)
                changed = True
        if changed:
            self._advance_commit()

    # ------------------------------------------------------------------ catch-up

    def _learn_under(self, ballot: Ballot, teaches: bool = False) -> bool:
        """Before learning chosen slots from a peer whose promise is ``ballot``: raise ours.

        Every slot the peer knows chosen was chosen at or below its promise, so from now
        on we may only accept proposals that carry those very values (P2c). A leader or
        candidate below that promise is deposed and steps down; one at or above it never
        needs to be told (its own phase 1 found every chosen value) and ignores it.
        Returns whether to go on and learn.

        ``teaches``: the message holds this node's next slot. A candidate takes it even
        from below its ballot: its phase 1 may wait forever on nodes that cannot vote
        there (a node leaving the cluster may be the only other one that knows the
        slot). It has proposed nothing at its ballot and its promise is above the
        sender's, so it may learn; its phase 1 goes on, and counts the slots above what
        it learned (or times out and starts again from there).
        """
        self._see(ballot)
        if self.role in (Role.LEADER, Role.CANDIDATE):
            if ballot <= self.ballot and teaches and self.role is Role.CANDIDATE:
                self.coverage["candidate_learns_chosen"] += 1
                return True
            if ballot <= self.ballot:
                self.coverage["leader_ignores_chosen"] += 1
                return False
            self.coverage["chosen_deposes_leader"] += 1
            self._become_follower(None)
        if ballot > self.promised:
            self._set_promised(ballot)
        return True

    def _on_chosen(self, m: Chosen) -> None:
        if self.bugs.trust_any_chosen:
            self._trust_chosen(m)
            return
        teaches = m.first_slot <= self.commit_index + 1 < m.first_slot + len(m.values)
        if not self._learn_under(m.ballot, teaches):
            return
        self.coverage["chosen_learned"] += 1
        changed = False
        for i, value in enumerate(m.values):
            slot = m.first_slot + i
            if slot <= self.snapshot_slot:
                continue
            old = self.log.get(slot)
            if old is not None and old.chosen:
                continue
            # The ballot of a chosen record bounds the ballot it was chosen at.
            ballot = max(old.ballot, m.ballot) if old is not None else m.ballot
            self._store(SlotValue(slot, ballot, value, True))
            self.max_slot = max(self.max_slot, slot)
            changed = True
        if changed:
            self._advance_commit()
        if self.leader == m.src:
            self._leader_contact = 0
            # Acknowledge at once so the leader streams the next batch without waiting
            # for a heartbeat.
            self._send(m.src, self._commit_ack(m.ballot, 0, m.commit_index))

    def _trust_chosen(self, m: Chosen) -> None:
        """The planted bug: learn ``m`` whoever sent it and whatever our role, under the
        ballot of what we held there (or none), as the review found the core doing."""
        changed = False
        for i, value in enumerate(m.values):
            slot = m.first_slot + i
            old = self.log.get(slot)
            if slot <= self.snapshot_slot or (old is not None and old.chosen):
                continue
            self._store(SlotValue(slot, old.ballot if old is not None else ZERO, value, True))
            self.max_slot = max(self.max_slot, slot)
            changed = True
        if changed:
            self._advance_commit()
            self._check_reads()

    def _on_snapshot_request(self, m: SnapshotRequest) -> None:
        self.coverage["snapshot_request_received"] += 1
        self._teach(m.src, m.commit_index)

    def _teach(self, dst: int, commit_index: int) -> None:
        """Send ``dst``, whose commit index is ``commit_index``, the chosen slots it
        lacks (one catch-up batch), or our snapshot if they are compacted here."""
        if self.snapshot_slot > commit_index:
            self._out.snapshots_to_send.append(dst)
        elif self.commit_index > commit_index:
            first = commit_index + 1
            last = min(self.commit_index, first + self.options.catchup_batch - 1)
            values = tuple(self.log[s].value for s in range(first, last + 1))
            self._send(dst, Chosen(self.id, self.promised, first, values, self.commit_index))

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        if m.last_slot <= self.commit_index or not self._learn_under(m.ballot, True):
            return
        self.coverage["snapshot_installed"] += 1
        for slot in [s for s in self.log if s <= m.last_slot]:
            del self.log[slot]
        self.snapshot_slot = m.last_slot
        self.commit_index = m.last_slot
        self.applied = m.last_slot
        self.max_slot = max(self.max_slot, m.last_slot)
        self.next_slot = max(self.next_slot, m.last_slot + 1)
        self._out.snapshot_install = m
        self._out.persist.snapshot = m
        self._out.persist.compact_through = m.last_slot
        # Entries already queued for writing at or below the snapshot are now moot.
        self._out.persist.entries = [e for e in self._out.persist.entries if e.slot > m.last_slot]
        if m.membership:
            # The changes the snapshot covers are compacted away: its history carries them.
            self._adopt_history(History.decode(m.membership))
        self._refresh_membership()  # the commit index jumped
        self._advance_commit()
