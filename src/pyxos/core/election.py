"""Becoming leader: pre-votes, phase 1 (Prepare and Promise), and taking over the log.

A node whose election timer runs out first asks for pre-votes, which bind nobody and are
refused while the voter hears a live leader (so a node cut off from the others never
raises the ballot everyone must then beat). With a quorum of grants it picks a ballot
above every one it has seen and runs phase 1 once for every slot above its commit index;
with a quorum of promises it re-proposes, per slot, the value known chosen or else the
one accepted at the highest ballot, and fills the holes with no-ops (Multi-Paxos).
"""

from __future__ import annotations

from pyxos.core.base import ReplicaBase
from pyxos.core.messages import (
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Reject,
    SlotValue,
    SnapshotRequest,
)
from pyxos.core.options import Role
from pyxos.core.progress import PeerProgress


class ElectionMixin(ReplicaBase):
    """Pre-candidate and candidate roles, and the acceptor's side of phase 1."""

    def _tick_waiting(self) -> None:
        """A follower, pre-candidate or candidate's tick: the election timer."""
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            if self.role is Role.FOLLOWER:
                self._start_prevote()
            else:
                # Neither pre-vote nor phase 1 finished in time: back off, then retry.
                self._become_follower(None, backoff=True)

    def _start_prevote(self) -> None:
        self.role = Role.PRECANDIDATE
        self.leader = None
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()
        self._votes = {self.id}
        self._prevote = self.max_seen.successor(self.id)
        for peer in self._peers:
            self._send(peer, PreVote(self.id, self._prevote))
        if self._votes_in_all(self._votes, 1):
            self._start_campaign()

    def _start_campaign(self) -> None:
        self.role = Role.CANDIDATE
        self.leader = None
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()
        self.ballot = self.max_seen.successor(self.id)
        self.max_seen = self.ballot
        self._set_promised(self.ballot)
        self._votes = set()
        self._promises.clear()
        # Our own promise counts only once it is durable (see persisted()).
        self._self_promise = self.ballot
        prepare = Prepare(self.id, self.ballot, self.commit_index + 1)
        for peer in self._peers:
            self._send(peer, prepare)

    # ------------------------------------------------------------------ pre-votes

    def _on_prevote(self, m: PreVote) -> None:
        live_leader = self.role is Role.LEADER or (
            self.leader is not None and self._leader_contact < self.options.election_ticks
        )
        granted = not live_leader and self.voter
        self.coverage["prevote_granted" if granted else "prevote_denied"] += 1
        self._send(m.src, PreVoteReply(self.id, m.ballot, granted, self.promised))

    def _on_prevote_reply(self, m: PreVoteReply) -> None:
        self._see(m.promised)
        if not m.granted or m.ballot != self._prevote:
            return
        self._votes.add(m.src)
        if self._votes_in_all(self._votes, 1):
            self._start_campaign()

    def _note_prevote_reply(self, m: PreVoteReply) -> None:
        """A late reply: only the promise it reports is of use (the next ballot beats it)."""
        self._see(m.promised)

    # ------------------------------------------------------------------ phase 1

    def _on_prepare(self, m: Prepare) -> None:
        self._see(m.ballot)
        if not self.voter or m.first_slot < self.member_since:
            # Promises nothing: its state may be missing what it once promised, or (below
            # the slot that added it) what an earlier member of its id promised. What it
            # knows chosen it still teaches (a node its own log removed may be the only
            # one left that knows the change removing it).
            if self.commit_index >= m.first_slot:
                self.coverage["prepare_taught_chosen"] += 1
                self._teach(m.src, m.first_slot - 1)
            return
        if m.ballot < self.promised:
            self._send(m.src, Reject(self.id, m.ballot, self.promised))
            return
        if m.ballot > self.promised:
            self._set_promised(m.ballot)
            if self.role is not Role.FOLLOWER:
                self._become_follower(None)
        # Give the candidate time to finish instead of competing with it.
        self._election_elapsed = 0
        omitted = self.snapshot_slot
        if self.commit_index - m.first_slot >= self.options.max_promise_entries:
            omitted = self.commit_index
            self.coverage["promise_omits_chosen"] += 1
        first = max(m.first_slot, omitted + 1)
        accepted = tuple(self.log[s] for s in range(first, self.max_slot + 1) if s in self.log)
        promise = Promise(self.id, m.ballot, accepted, self.commit_index, omitted, m.first_slot)
        self._send_persisted(m.src, promise)

    def _on_promise(self, m: Promise) -> None:
        if m.ballot != self.ballot:
            return
        self._promises[m.src] = m
        self._votes.add(m.src)
        self._maybe_lead()

    def _maybe_lead(self) -> None:
        if not self._votes_in_all(self._votes, 1) or self.id not in self._votes:
            return
        first = self.commit_index + 1
        behind = [p for p in self._promises.values() if p.snapshot_slot >= first]
        if behind:
            # Slots we do not know are chosen and compacted elsewhere: catch up first,
            # and let an up-to-date node lead meanwhile.
            self.coverage["candidate_behind_asks_snapshot"] += 1
            source = max(behind, key=lambda p: p.snapshot_slot)
            self._send(source.src, SnapshotRequest(self.id, self.commit_index))
            self._become_follower(None, backoff=True)
            return
        # The planted bug forgets every value phase 1 found, its own included.
        merged = {} if self.bugs.skip_reproposal else self._phase1_values(first)
        top = max(merged, default=first - 1)
        self.coverage["elected"] += 1
        if any(s not in merged for s in range(first, top + 1)):
            self.coverage["holes_filled_with_noops"] += 1
        self._become_leader()
        self._phase1_end = top
        # The election covers the configurations known now; what it found above the
        # slots this leader may propose in yet waits (``reconfig``).
        self._covered = {e.version for e in self.history.governing(first, 1 << 62)}
        self._found = {s: sv.value for s, sv in merged.items()}
        self._found_top = top
        self.next_slot = first
        self._propose_found()

    def _phase1_values(self, first: int) -> dict[int, SlotValue]:
        """Per slot from ``first``: the value known chosen, else the one accepted at the
        highest ballot, among our own log and the promises of our phase-1 quorum."""
        return self._phase1_values_from(first, list(self._promises.values()))

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self._backoff = 0
        self._votes.clear()
        self._promises.clear()
        self._inflight.clear()
        self._heartbeat_elapsed = 0
        self._heard = {self.id}
        self._quorum_elapsed = 0
        self._leader_contact = 0
        self._progress = {p: PeerProgress() for p in self._peers}
        self._found.clear()
        self._found_top = 0
        self._covered.clear()
        self._extending.clear()
        self._transfer = None
        self._read_rounds.clear()
        self._read_queue = None
        self._broadcast_commit()
