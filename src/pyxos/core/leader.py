"""Leading: phase 2 for batches of commands over a window of slots, and keeping followers up.

A leader proposes what waits in one slot per batch (adaptive batching: with slots in
flight it opens another only once ``busy_batch`` commands wait), counts acceptances, and
tells followers what is chosen at once (piggybacked on the next Propose or a bare
``Commit``). It re-sends proposals that waited too long, streams chosen runs (or its
snapshot) to followers that lag, and steps down when rejected by a higher promise or
when a quorum has not been heard from for an election timeout (check quorum).
"""

from __future__ import annotations

from pyxos.core.ballot import Ballot
from pyxos.core.base import ReplicaBase
from pyxos.core.errors import InvariantViolation
from pyxos.core.messages import (
    Accepted,
    Chosen,
    Commit,
    CommitAck,
    Forward,
    Propose,
    Reject,
    SlotValue,
    Value,
)
from pyxos.core.progress import Inflight, PeerProgress


class LeaderMixin(ReplicaBase):
    """The leader role; see the module docstring."""

    def _tick_leader(self) -> None:
        self._leader_contact = 0
        self._heartbeat_elapsed += 1
        self._quorum_elapsed += 1
        if self._quorum_elapsed >= self.options.election_ticks:
            # Check quorum: a leader that has not heard from a quorum steps down, so that
            # clients on its side of a partition are not told it still leads.
            if not self._votes_in_all(self._heard, 2):
                self.coverage["check_quorum_steps_down"] += 1
                self._become_follower(None)
                return
            self._heard = {self.id}
            self._quorum_elapsed = 0
        if self._heartbeat_elapsed >= self.options.heartbeat_ticks:
            self._broadcast_commit()
        self._retransmit()
        self._tick_membership()

    def _broadcast_commit(self) -> None:
        self._heartbeat_elapsed = 0
        self._read_seq += 1
        self._open_read_round()
        hb = Commit(self.id, self.ballot, self.commit_index, self._read_seq)
        self._commit_sent = self.commit_index
        for peer in self._peers:
            self._send(peer, hb)
        self._check_reads()

    def _notify_commit(self) -> None:
        """Tell followers of new commits at once: a follower answers its own clients only
        when it learns that their commands are chosen."""
        if self.commit_index > self._commit_sent:
            self._commit_sent = self.commit_index
            notice = Commit(self.id, self.ballot, self.commit_index, self._read_seq)
            for peer in self._peers:
                self._send(peer, notice)

    # ------------------------------------------------------------------ proposing

    def _may_open_slot(self, in_flight: int) -> bool:
        """Whether the leader may propose pending commands in one more slot now."""
        if self._transfer is not None or self.next_slot <= self._found_top:
            return False  # handing off; or what phase 1 found goes first
        if self.commit_index + in_flight + 1 > self._proposable_until():
            return False  # the configuration of that slot is not known, or not prepared
        if in_flight == 0:
            return True
        return in_flight < self.options.window and len(self._pending) >= self.options.busy_batch

    def _skip_chosen(self) -> None:
        """Move the next slot above the commit index: slots up to it are decided.

        A leader's own log may know later slots chosen (learned before it led, above a
        gap); once the gap fills, the commit index jumps past the next slot, and what
        phase 1 found for those slots is moot.
        """
        if self.next_slot <= self.commit_index:
            self.coverage["leader_skips_chosen"] += 1
            for slot in range(self.next_slot, self.commit_index + 1):
                self._found.pop(slot, None)
            self.next_slot = self.commit_index + 1

    def _propose_pending(self) -> None:
        """Batch what waits into as many slots as the window and batching allow."""
        self._skip_chosen()
        values: list[Value] = []
        in_flight = self.next_slot - 1 - self.commit_index
        while self._pending and self._may_open_slot(in_flight + len(values)):
            batch: list[bytes] = []
            size = 0
            while self._pending and len(batch) < self.options.max_batch_commands:
                cmd = self._pending[0]
                if batch and size + len(cmd) > self.options.max_batch_bytes:
                    break
                batch.append(self._pending.popleft())
                size += len(cmd)
            values.append(tuple(batch))
        if values:
            self._propose_run(values)

    def _propose_run(self, values: list[Value]) -> None:
        """Propose ``values`` in consecutive slots from ``next_slot`` at our ballot."""
        if not values:
            return
        first = self.next_slot
        self._check_open_slot(first)
        self._check_proposable(first, len(values))
        for i, value in enumerate(values):
            slot = first + i
            entry = SlotValue(slot, self.ballot, value)
            self._store(entry)
            self._inflight[slot] = Inflight(value, set(), self._ticks)
            self._self_accepts.append((self.ballot, slot))
        self.next_slot = first + len(values)
        self.max_slot = max(self.max_slot, self.next_slot - 1)
        msg = Propose(self.id, self.ballot, first, tuple(values), self.commit_index)
        self._commit_sent = self.commit_index
        for peer in self._peers:
            self._send(peer, msg)

    def _check_open_slot(self, slot: int) -> None:
        """A slot at or below the commit index is decided: proposing there would overwrite a
        chosen value on disk, under a commit index that covers it."""
        if slot <= self.commit_index and not self.bugs.trust_any_chosen:
            raise InvariantViolation(
                f"node {self.id} would propose into slot {slot}, below its commit index "
                f"{self.commit_index}"
            )

    def _retransmit(self) -> None:
        """Re-send proposals that have waited too long (messages can be lost)."""
        if not self._inflight:
            return
        limit = self._ticks - self.options.retransmit_ticks
        stale = sorted(s for s, f in self._inflight.items() if f.sent_tick <= limit)
        if not stale:
            return
        self.coverage["retransmitted"] += 1
        run_start = stale[0]
        run: list[Value] = []
        runs: list[tuple[int, list[Value]]] = []
        for slot in stale:
            if run and slot != run_start + len(run):
                runs.append((run_start, run))
                run_start, run = slot, []
            run.append(self._inflight[slot].value)
            self._inflight[slot].sent_tick = self._ticks
        runs.append((run_start, run))
        for start, vals in runs:
            for peer in self._peers:
                acked = all(peer in self._inflight[s].acks for s in range(start, start + len(vals)))
                if not acked:
                    msg = Propose(self.id, self.ballot, start, tuple(vals), self.commit_index)
                    self._send(peer, msg)

    # ------------------------------------------------------------------ votes

    def _on_accepted(self, m: Accepted) -> None:
        if m.ballot != self.ballot:
            return
        self._heard.add(m.src)
        chosen_any = False
        for slot in range(m.first_slot, m.last_slot + 1):
            chosen_any |= self._count_accept(slot, m.src)
        if chosen_any:
            self._advance_commit()
            self._check_reads()

    def _count_own_accepts(self, accepts: list[tuple[Ballot, int]]) -> None:
        """Our own acceptances are durable now: count them."""
        chosen_any = False
        for ballot, slot in accepts:
            if ballot == self.ballot:
                chosen_any |= self._count_accept(slot, self.id)
        if chosen_any:
            self._advance_commit()
            self._check_reads()

    def _count_accept(self, slot: int, voter: int) -> bool:
        flight = self._inflight.get(slot)
        if flight is None:
            return False
        flight.acks.add(voter)
        if not self._config_of(slot).is_phase2_quorum(flight.acks):
            return False
        del self._inflight[slot]
        entry = self.log.get(slot)
        if entry is not None and not entry.chosen:
            self.log[slot] = SlotValue(slot, entry.ballot, entry.value, True)
        return True

    def _on_reject(self, m: Reject) -> None:
        self._see(m.promised)
        if m.ballot == self.ballot and m.promised > self.ballot:
            # Someone promised a higher ballot: stop, and back off for a random, growing
            # time so that two proposers do not keep pre-empting each other.
            self.coverage["rejected_backs_off"] += 1
            self._become_follower(None, backoff=True)

    def _note_reject(self, m: Reject) -> None:
        """A rejection that reaches us after we stopped proposing: note the ballot."""
        self._see(m.promised)

    def _on_forward(self, m: Forward) -> None:
        room = self.options.max_pending - len(self._pending)
        self._pending.extend(m.commands[: max(room, 0)])

    # ------------------------------------------------------------------ followers

    def _on_commit_ack(self, m: CommitAck) -> None:
        if m.ballot != self.ballot:
            return
        progress = self._progress.get(m.src)
        if progress is None:
            return
        progress.commit_index = m.commit_index
        progress.voter = m.voter
        progress.heard_tick = self._ticks
        if m.voter:
            # Only a voter's ack says it still promises our ballot.
            self._heard.add(m.src)
            progress.read_seq = max(progress.read_seq, m.read_seq)
        else:
            self.coverage["nonvoter_ack"] += 1
        self._check_reads()
        self._catch_up(m.src, progress)

    def _catch_up(self, peer: int, progress: PeerProgress) -> None:
        """Send a lagging follower the chosen slots it lacks, or our snapshot."""
        if progress.commit_index >= self.commit_index:
            return
        if progress.commit_index < self.snapshot_slot:
            if self._ticks - progress.snapshot_tick >= self.options.election_ticks:
                self.coverage["snapshot_sent_to_lagger"] += 1
                progress.snapshot_tick = self._ticks
                self._out.snapshots_to_send.append(peer)
            return
        fresh = progress.catchup_sent_to <= progress.commit_index
        stale = self._ticks - progress.catchup_tick >= self.options.retransmit_ticks
        if not (fresh or stale):
            return
        first = progress.commit_index + 1
        last = min(self.commit_index, first + self.options.catchup_batch - 1)
        values = tuple(self.log[s].value for s in range(first, last + 1))
        progress.catchup_sent_to = last
        progress.catchup_tick = self._ticks
        self.coverage["catchup_run_sent"] += 1
        self._send(peer, Chosen(self.id, self.promised, first, values, self.commit_index))
