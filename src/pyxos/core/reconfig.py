"""Changing the cluster from inside: membership changes, phase 1 per configuration,
leader transfer.

A leader proposes a change alone in a slot, one at a time (a change waits until the last
one governs the next slot). It proposes in slot ``s`` only once every slot up to
``s - delay`` is chosen and known to it, so it knows the configuration of ``s``
(:mod:`pyxos.core.membership`), and only once a quorum of that configuration promised its
ballot: its election covers the configurations it knew then; for a configuration made by
a change chosen while it leads, it runs phase 1 again, at the same ballot, from the first
slot that configuration governs ("extension"), and adopts what those promises report.
Values an election found above the slots it may propose in yet wait in ``_found``.

Leader transfer: the leader stops opening slots, waits until the target has every chosen
slot, and tells it to campaign at once (``TimeoutNow``); the target's higher ballot
deposes it. A leader that a change removes hands off the same way when the change takes
effect. A node that is not a member is answered with ``NotMember`` and learns that it was
removed.
"""

from __future__ import annotations

import msgspec

from pyxos.core.base import ReplicaBase
from pyxos.core.errors import InvariantViolation
from pyxos.core.membership import Change, Epoch, as_change, change_value
from pyxos.core.messages import (
    NOOP,
    ChangeReply,
    ChangeRequest,
    Commit,
    Join,
    NotMember,
    Prepare,
    Promise,
    SnapshotRequest,
    TimeoutNow,
    Value,
)
from pyxos.core.options import Role

_FAR = 1 << 62
_CHANGE_DECODER = msgspec.msgpack.Decoder(Change)
_ENCODER = msgspec.msgpack.Encoder()


def _is_change(value: Value) -> bool:
    return as_change(value) is not None


class ReconfigMixin(ReplicaBase):
    """Membership changes and leader transfer, on the leader's side and the asker's."""

    # ------------------------------------------------------------------ asking

    def _request_change(self, change: Change) -> None:
        if self.role is Role.LEADER:
            self._take_change(change, self.id)
        elif self.leader is not None and self.leader != self.id:
            self._send(
                self.leader, ChangeRequest(self.id, _ENCODER.encode(change), 0, change.token)
            )
        else:
            self._out.change_errors.append((change.token, "no leader is known; retry"))

    def _request_transfer(self, to: int, token: int) -> None:
        if self.role is Role.LEADER:
            self._take_transfer(to, token, self.id)
        elif self.leader is not None:
            self._send(self.leader, ChangeRequest(self.id, b"", to, token))
        else:
            self._out.change_errors.append((token, "no leader is known; retry"))

    def _refuse(self, origin: int, token: int, error: str) -> None:
        if origin == self.id:
            self._out.change_errors.append((token, error))
        else:
            self._send(origin, ChangeReply(self.id, token, error))

    def _on_change_request(self, m: ChangeRequest) -> None:
        if m.transfer_to:
            self._take_transfer(m.transfer_to, m.token, m.src)
            return
        try:
            change = _CHANGE_DECODER.decode(m.change)
        except msgspec.MsgspecError:
            self._refuse(m.src, m.token, "malformed membership change")
            return
        self._take_change(change, m.src)

    def _on_change_reply(self, m: ChangeReply) -> None:
        self._out.change_errors.append((m.token, m.error))

    def _refuse_change_request(self, m: ChangeRequest) -> None:
        """Not the leader (any more): the asker retries where the leader is."""
        self._send(m.src, ChangeReply(self.id, m.token, "not the leader; retry"))

    # ------------------------------------------------------------------ the leader

    def _change_busy(self) -> str | None:
        """Why no change may be proposed now (one at a time), or ``None``."""
        if self._transfer is not None:
            return "a leader transfer is under way; retry"
        if self._queued_change is not None or any(
            _is_change(f.value) for f in self._inflight.values()
        ):
            return "another membership change is in progress; retry"
        if any(_is_change(v) for v in self._found.values()):
            return "another membership change is in progress; retry"
        if self.history.latest.start > self.commit_index + 1:
            return "the last membership change has not taken effect yet; retry"
        return None

    def _take_change(self, change: Change, origin: int) -> None:
        error = self._change_busy() or self.history.check(change)
        if error is None and change.kind == "promote":
            error = self._lag_error(change.node)
        if error is None and change.kind in ("promote", "remove"):
            error = self._quorum_error(change)
        if error is not None:
            self.coverage["change_refused"] += 1
            self._refuse(origin, change.token, error)
            return
        self._queued_change = (change_value(change), change.token, origin)

    def _lag_error(self, node: int) -> str | None:
        progress = self._progress.get(node)
        if progress is None or not progress.voter:
            return f"node {node} has not caught up yet (its data dir is not registered)"
        behind = self.commit_index - progress.commit_index
        if behind > self.options.catchup_batch:
            return f"node {node} is catching up ({behind} slots behind); promote it later"
        return None

    def _quorum_error(self, change: Change) -> str | None:
        """A change that would leave no quorum of voters this leader hears from is refused
        (etcd's strict reconfiguration check): it would stop the cluster."""
        voters = set(self.history.latest.voters)
        if change.kind == "remove":
            voters.discard(change.node)
        else:
            voters.add(change.node)
        recent = self._ticks - self.options.election_ticks
        live = {self.id} if self.voter else set()
        live |= {
            p
            for p, pr in self._progress.items()
            if pr.voter and pr.heard_tick >= recent and p in voters
        }
        if len(live & voters) * 2 > len(voters):
            return None
        return (
            f"the change would leave {len(voters)} voters of which only {len(live & voters)} "
            f"answer: no quorum"
        )

    def _proposable_until(self) -> int:
        """The last slot this leader may propose in now (see the module docstring)."""
        limit = self.commit_index + min(self.history.delay, self.options.window)
        history = self.history
        for epoch in history.epochs:
            if epoch.version in self._covered or epoch.start > limit:
                continue
            if history.end_of(epoch) > self.commit_index:
                return max(self.commit_index, epoch.start - 1)
        return limit

    def _start_extensions(self) -> None:
        """Phase 1 again for every configuration this leader's ballot has not covered."""
        for epoch in self.history.epochs:
            if epoch.version in self._covered:
                continue
            if self.bugs.skip_config_prepare:
                self._covered.add(epoch.version)  # the planted bug: trust the election
            else:
                self._start_extension(epoch)

    def _propose_found(self) -> None:
        """Propose, in order, what phase 1 found, as far as the leader may."""
        self._skip_chosen()
        if self.next_slot > self._found_top:
            return
        found = self._found
        last = min(self._found_top, self._proposable_until())
        if last < self.next_slot:
            return
        values = [found.pop(s, NOOP) for s in range(self.next_slot, last + 1)]
        self._propose_run(values)

    def _propose_queued_change(self) -> None:
        self._skip_chosen()
        queued = self._queued_change
        if queued is None or self.next_slot <= self._found_top:
            return
        if self.next_slot > self._proposable_until():
            return
        self._queued_change = None
        self.coverage["change_proposed"] += 1
        self._propose_run([queued[0]])

    def _leader_has_work(self) -> bool:
        if self.next_slot > self._proposable_until():
            return False
        return self.next_slot <= self._found_top or self._queued_change is not None

    def _check_proposable(self, first: int, count: int) -> None:
        last = first + count - 1
        if last > self._proposable_until():
            raise InvariantViolation(
                f"node {self.id} would propose slot {last} beyond what it may (commit "
                f"{self.commit_index}, membership version {self.history.version})"
            )

    def _tick_membership(self) -> None:
        """A leader's tick: extensions, transfer, promotions, and pushing a change into
        effect with no-ops when no command comes."""
        if self._extending and self._ticks - self._extend_tick >= self.options.retransmit_ticks:
            for version in list(self._extending):
                epoch = self._epoch(version)
                if epoch is not None:
                    self._send_extension(epoch)
        if self._transfer is not None:
            self._tick_transfer()
            return
        latest = self.history.latest
        if latest.start > self.commit_index + 1 and self._may_fill():
            # Nothing in flight: slots at or below the commit index are decided.
            self.next_slot = max(self.next_slot, self.commit_index + 1)
            last = min(latest.start - 1, self._proposable_until())
            if last >= self.next_slot:
                self.coverage["change_filled_with_noops"] += 1
                self._propose_run([NOOP] * (last - self.next_slot + 1))
        if self._change_busy() is None:
            for m in latest.members:
                if not m.voter and m.auto_promote and self._lag_error(m.id) is None:
                    self.coverage["learner_auto_promoted"] += 1
                    self._queued_change = (change_value(Change("promote", m.id)), 0, self.id)
                    break

    def _may_fill(self) -> bool:
        return (
            not self._pending
            and not self._inflight
            and self._queued_change is None
            and self.next_slot > self._found_top
        )

    # ------------------------------------------------------------------ extensions

    def _epoch(self, version: int) -> Epoch | None:
        for epoch in self.history.epochs:
            if epoch.version == version:
                return epoch
        return None

    def _start_extension(self, epoch: Epoch) -> None:
        if epoch.version in self._extending or epoch.version in self._covered:
            return
        self.coverage["config_prepare_sent"] += 1
        self._extending[epoch.version] = {}
        self._send_extension(epoch)
        self._check_extension(epoch)

    def _send_extension(self, epoch: Epoch) -> None:
        self._extend_tick = self._ticks
        answered = self._extending.get(epoch.version, {})
        prepare = Prepare(self.id, self.ballot, epoch.start)
        for voter in epoch.voters:
            if voter != self.id and voter not in answered:
                self._send(voter, prepare)

    def _on_leader_promise(self, m: Promise) -> None:
        """A promise to this leader's ballot: the answer to an extension's Prepare."""
        if m.ballot != self.ballot:
            return
        for version, promises in self._extending.items():
            epoch = self._epoch(version)
            if epoch is not None and m.first_slot == epoch.start and m.src in epoch.voters:
                promises[m.src] = m
                self._check_extension(epoch)
                return

    def _check_extension(self, epoch: Epoch) -> None:
        promises = self._extending.get(epoch.version)
        if promises is None:
            return
        votes = set(promises)
        if self.id in epoch.voters:
            votes.add(self.id)  # our promise of this ballot is durable since the election
        if not epoch.config().is_phase1_quorum(votes):
            return
        behind = [p for p in promises.values() if p.snapshot_slot >= epoch.start]
        if behind:
            self.coverage["candidate_behind_asks_snapshot"] += 1
            self._send(behind[0].src, SnapshotRequest(self.id, self.commit_index))
            self._become_follower(None, backoff=True)
            return
        del self._extending[epoch.version]
        self._covered.add(epoch.version)
        self.coverage["config_prepare_done"] += 1
        end = min([e.start for e in self.history.epochs if e.start > epoch.start] or [_FAR])
        first = max(epoch.start, self.next_slot)
        merged = self._phase1_values_from(first, list(promises.values()))
        for slot, sv in merged.items():
            if slot < end:
                self._found[slot] = sv.value
                self._found_top = max(self._found_top, slot)
        self._phase1_end = max(self._phase1_end, self._found_top)

    # ------------------------------------------------------------------ transfer

    def _take_transfer(self, to: int, token: int, origin: int) -> None:
        error = None
        if to == self.id:
            error = f"node {to} is the leader already"
        elif to not in self.config.members or to not in self.history.latest.voters:
            error = f"node {to} is not a voter"
        elif self._transfer is not None:
            error = "a leader transfer is under way; retry"
        if error is not None:
            self._refuse(origin, token, error)
            return
        self.coverage["transfer_started"] += 1
        self._transfer = (to, self._ticks + self.options.transfer_ticks, False, token, origin)
        self._broadcast_commit()  # fresh progress from the target

    def _tick_transfer(self) -> None:
        assert self._transfer is not None
        to, deadline, sent, token, origin = self._transfer
        if self._ticks >= deadline:
            self.coverage["transfer_timed_out"] += 1
            self._transfer = None
            self._refuse(origin, token, f"node {to} did not take over in time; retry")
            return
        if sent:
            return
        progress = self._progress.get(to)
        if (
            progress is not None
            and progress.commit_index >= self.commit_index
            and (not self._inflight)
        ):
            self._send(to, TimeoutNow(self.id, self.ballot))
            self._transfer = (to, deadline, True, token, origin)

    def _on_timeout_now(self, m: TimeoutNow) -> None:
        if self.role is Role.LEADER or not self.votes_here or not self.voter:
            return
        if m.ballot < self.promised:
            return  # from a deposed leader
        self.coverage["transfer_campaign"] += 1
        self._start_campaign()

    def _step_aside(self) -> None:
        """This leader is no voter of the next slot's configuration: hand off, step down."""
        candidates = [p for p in self.config.members if p in self._progress]
        if candidates:
            to = max(candidates, key=lambda p: (self._progress[p].commit_index, -p))
            self.coverage["leader_steps_aside"] += 1
            self._send(to, TimeoutNow(self.id, self.ballot))
        self._become_follower(None)

    # ------------------------------------------------------------------ non-members

    def _tell_not_member(self, src: int) -> None:
        last = self._not_member_told.get(src)
        if last is not None and self._ticks - last < self.options.election_ticks:
            return
        self._not_member_told[src] = self._ticks
        self.coverage["not_member_told"] += 1
        voter = self.voter and self.id in self.config.members
        self._send(src, NotMember(self.id, self.history.version, voter, self.commit_index))

    def _tick_leaving(self) -> None:
        """A node its own log removed asks its peers, now and then, whether they know it
        (a member that has applied the change answers ``NotMember``)."""
        self._join_elapsed += 1
        if self._join_elapsed >= self.options.election_ticks:
            self._join_elapsed = 0
            me = self.history.latest.member(self.id)
            ping = Join(self.id, self.incarnation, me.since if me is not None else 0)
            for peer in self.history.latest.ids:
                self._send(peer, ping)

    def _on_not_member(self, m: NotMember) -> None:
        me = self.history.latest.member(self.id)
        if self.removed is None and me is not None and m.version <= me.since:
            # It has not heard of our addition yet (we were removed, and added again), and
            # refuses all we send but chosen slots: teach it those, up to our addition.
            if self.commit_index > m.commit_index:
                self.coverage["readded_teaches"] += 1
                self._teach(m.src, m.commit_index)
            return
        if self.removed is not None or not m.voter:
            return
        # Our own log removed us, or its membership is newer than our addition and we are
        # not in it: we are out, and a member knows (it can lead and teach the others).
        self.coverage["learned_removed"] += 1
        self.removed = (
            f"node {self.id} was removed from the cluster (node {m.src} holds membership "
            f"version {m.version} without it); start it again only with an empty data dir, "
            f"once it has been added back"
        )
        self._out.removed = self.removed
        if self.role is not Role.FOLLOWER:
            self._become_follower(None)

    def _heartbeat_now(self) -> None:
        hb = Commit(self.id, self.ballot, self.commit_index, self._read_seq)
        for peer in self._peers:
            self._send(peer, hb)
