"""One Multi-Paxos replica: proposer, acceptor and learner in a pure state machine.

Input is ``step(message)``, ``tick()``, ``propose(command)``, ``read_index(token)``;
output is a :class:`~pyxos.core.ready.Ready` (see that module for the driver's duties).
Nothing here touches a clock, a socket, a file or global randomness: the same inputs give
the same outputs, which is what lets the simulator replay any run from its seed.

Roles, one module each, put together here; ``step`` dispatches by role through one table
(:data:`_STEPS`), as etcd raft's step functions do, so a handler never asks which role it
is in:

* follower (``acceptor``): accepts proposals from the leader it knows, learns chosen
  slots from commit notices and catch-up, forwards client commands to the leader;
* pre-candidate and candidate (``election``): pre-votes, which bind nobody, then phase 1
  for every slot above the commit index with a fresh ballot;
* leader (``leader``): re-proposes what phase 1 found, fills holes with no-ops, then runs
  phase 2 for batches of commands over a window of slots in flight;
* in every role, linearizable reads (``reads``), the registration of new data dirs
  (``joining``), and membership changes and leader transfer (``reconfig``, with the
  configurations themselves in ``membership``).

Safety (one value per slot) rests only on ballots, promises and quorum intersection.
Liveness rests on randomized election timeouts, randomized growing back-off after a
rejection, pre-votes and leader stickiness (a node that heard from a live leader within
the election timeout refuses to help depose it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyxos.core.acceptor import AcceptorMixin
from pyxos.core.bugs import NO_BUGS, ProtocolBugs
from pyxos.core.config import Config
from pyxos.core.election import ElectionMixin
from pyxos.core.errors import InvariantViolation, UsageError
from pyxos.core.joining import JoiningMixin
from pyxos.core.leader import LeaderMixin
from pyxos.core.membership import Change
from pyxos.core.messages import (
    Accepted,
    ChangeReply,
    ChangeRequest,
    Chosen,
    Commit,
    CommitAck,
    Forward,
    InstallSnapshot,
    Join,
    JoinReply,
    MembershipQuery,
    Message,
    NotMember,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Propose,
    ReadIndexReply,
    ReadIndexRequest,
    Reject,
    SnapshotRequest,
    TimeoutNow,
)
from pyxos.core.options import COVERAGE_POINTS, Options, Rng, Role
from pyxos.core.progress import PeerProgress
from pyxos.core.reads import ReadsMixin
from pyxos.core.ready import HardState, Ready, Standing
from pyxos.core.reconfig import ReconfigMixin

__all__ = [
    "COVERAGE_POINTS",
    "InvariantViolation",
    "Options",
    "Replica",
    "Rng",
    "Role",
    "UsageError",
]

_ANY_ROLE: dict[type, str] = {
    PreVote: "_on_prevote",
    PreVoteReply: "_note_prevote_reply",
    Prepare: "_on_prepare",
    Propose: "_on_propose",
    Reject: "_note_reject",
    Commit: "_on_commit",
    Chosen: "_on_chosen",
    ReadIndexRequest: "_refuse_read_index",
    ReadIndexReply: "_on_read_index_reply",
    SnapshotRequest: "_on_snapshot_request",
    InstallSnapshot: "_on_install_snapshot",
    Join: "_on_join",
    JoinReply: "_on_join_reply",
    TimeoutNow: "_on_timeout_now",
    ChangeRequest: "_refuse_change_request",
    ChangeReply: "_on_change_reply",
    NotMember: "_on_not_member",
    MembershipQuery: "_on_membership_query",
}
"""What every role does with a message kind (some roles do more, below)."""

_STEPS: dict[Role, dict[type, str]] = {
    Role.FOLLOWER: _ANY_ROLE,
    Role.PRECANDIDATE: {**_ANY_ROLE, PreVoteReply: "_on_prevote_reply"},
    Role.CANDIDATE: {**_ANY_ROLE, Promise: "_on_promise", Reject: "_on_reject"},
    Role.LEADER: {
        **_ANY_ROLE,
        Accepted: "_on_accepted",
        CommitAck: "_on_commit_ack",
        Reject: "_on_reject",
        Forward: "_on_forward",
        ReadIndexRequest: "_on_read_index_request",
        Promise: "_on_leader_promise",
        ChangeRequest: "_on_change_request",
    },
}
"""The handler of each message kind in each role; a kind a role does not list is dropped
(a follower drops a ``Forward``: two nodes with stale views could bounce it forever)."""


class Replica(ReconfigMixin, ElectionMixin, LeaderMixin, AcceptorMixin, ReadsMixin, JoiningMixin):
    """A Multi-Paxos node. See the module docstring."""

    def __init__(
        self,
        node_id: int,
        config: Config,
        rng: Rng,
        options: Options | None = None,
        state: HardState | None = None,
        bugs: ProtocolBugs = NO_BUGS,
    ) -> None:
        super().__init__(node_id, config, rng, options, state, bugs)
        # Bound per instance, so that a subclass's override is the one called.
        self._steps: dict[Role, dict[type, Callable[[Any], None]]] = {
            role: {kind: getattr(self, name) for kind, name in table.items()}
            for role, table in _STEPS.items()
        }
        if self.standing is Standing.JOINING:
            self._ask_to_join()

    # ------------------------------------------------------------------ public API

    def tick(self) -> None:
        """Advance logical time by one tick: timeouts, heartbeats, retransmissions."""
        self._ticks += 1
        self._leader_contact += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        elif self.leaving:
            self._tick_leaving()
        elif self.standing is Standing.JOINING:
            self._tick_joining()  # a non-voter never campaigns; one joining keeps asking
        elif self.standing is Standing.VOTER and self.votes_here:
            self._tick_waiting()  # only a voter of the next slot campaigns
        elif self._leader_contact >= self.options.election_ticks:
            # A learner no leader talks to: it asks its peers now and then, as a node
            # leaving does, so that one removed while it was away learns it from them.
            self._tick_leaving()

    def propose(self, command: bytes) -> bool:
        """Submit a client command.

        Returns False when the command cannot be taken now (no known leader, or too many
        queued): the caller should retry later or elsewhere. True means it was queued or
        forwarded, not that it will be chosen: the caller learns that from ``committed``.
        """
        if len(self._pending) >= self.options.max_pending:
            return False
        if self.role is not Role.LEADER and self.leader is None:
            return False
        self._pending.append(command)
        return True

    def read_index(self, token: int) -> None:
        """Ask for a linearizable read; ``token`` comes back in ``reads`` or ``failed_reads``.

        The leader confirms with a quorum that it still leads, and returns its commit index
        as of the request; the read may be served once this node has applied through it.
        """
        if self.bugs.reads_without_quorum:
            self._out.reads.append((token, self.commit_index))
        elif self.role is Role.LEADER:
            self._queue_read(token, origin=self.id)
        elif self.leader is not None:
            self._forward_reads.append(token)
        else:
            self._out.failed_reads.append(token)

    def campaign(self) -> None:
        """Start phase 1 now, skipping the pre-vote (leader transfer, duelling tests).

        A node that may not vote (learner, or still joining) does nothing.
        """
        if self.role is not Role.LEADER and self.voter:
            self._start_campaign()

    def change_membership(self, change: Change) -> None:
        """Ask for a membership change; proposed by the leader (forwarded there).

        The outcome comes back in ``Ready``: ``changes`` once it is chosen (with the
        reason if it did not apply), or ``change_errors`` with its ``token`` if the
        leader refused it at once (a change in progress, a learner that lags...).
        """
        self._request_change(change)

    def transfer_leadership(self, to: int, token: int = 0) -> None:
        """Ask the leader to hand leadership to voter ``to`` once it has caught up.

        Success shows as ``to`` leading; a refusal or a timeout comes back in
        ``change_errors`` with ``token``.
        """
        self._request_transfer(to, token)

    def compact(self, through: int) -> None:
        """Forget log entries up to ``through``: the driver saved a snapshot covering them."""
        if through > self.applied:
            raise UsageError(f"cannot compact through {through}, applied only {self.applied}")
        if through <= self.snapshot_slot:
            return
        for slot in range(self.snapshot_slot + 1, through + 1):
            self.log.pop(slot, None)
        self.snapshot_slot = through
        self._out.persist.compact_through = through

    def step(self, message: Message) -> None:
        """Handle one message from a peer. Unknown senders are ignored."""
        src = message.src
        if src == self.id:
            return
        if src in self._refused and not isinstance(message, Chosen | InstallSnapshot):
            # Removed: it learns it, and takes no part. (A sender that is simply unknown
            # may have been added by a change not learned here yet; it is heard, and
            # counts in no quorum until the configuration lists it. Chosen slots are
            # learned from anyone, by the Chosen rule: a node added again under a
            # removed id teaches them to those that have not heard of its addition.)
            if not isinstance(message, NotMember):
                self._tell_not_member(src)
            return
        handler = self._steps[self.role].get(type(message))
        if handler is not None:
            handler(message)

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return any work."""
        out = self._out
        if self._outstanding is not None:
            return False
        return bool(
            out.messages
            or out.persisted_messages
            or not out.persist.empty()
            or out.reads
            or out.failed_reads
            or out.snapshots_to_send
            or out.snapshot_install is not None
            or out.change_errors
            or out.changes
            or (out.removed is not None)
            or self.commit_index > self.applied
            or self._forward_reads
            or (self._pending and self._can_flush())
            or (self.role is Role.LEADER and self._leader_has_work())
        )

    def ready(self) -> Ready:
        """Collect the work accumulated since the last ``advance``. Call ``advance`` next."""
        if self._outstanding is not None:
            raise UsageError("ready() called again before advance()")
        if self.role is Role.LEADER:
            self._propose_found()
            self._propose_queued_change()
        if self._pending:
            if self.role is Role.LEADER:
                self._propose_pending()
            elif self.leader is not None:
                commands = tuple(self._pending)
                self._pending.clear()
                self._send(self.leader, Forward(self.id, commands))
        self._flush_forward_reads()
        if self.role is Role.LEADER:
            self._notify_commit()
        out = self._out
        if self.commit_index > self.applied:
            for slot in range(self.applied + 1, self.commit_index + 1):
                out.committed.append((slot, self.log[slot].value))
            self.applied = self.commit_index
            if self.bugs.apply_out_of_order:
                out.committed.reverse()
        persist = out.persist
        if (
            persist.entries
            or persist.promised is not None
            or persist.snapshot is not None
            or persist.standing is not None
            or persist.registry
            or persist.membership is not None
            or any(v == 0 for v in persist.registry.values())
        ):
            persist.must_sync = True
        out.self_accepts, self._self_accepts = self._self_accepts, []
        out.self_promise, self._self_promise = self._self_promise, None
        self._out = Ready()
        self._outstanding = out
        return out

    def advance(self, ready: Ready, *, persisted: bool = True) -> None:
        """Release ``ready``, so that the next ``ready()`` may be taken.

        With ``persisted=True`` (the default) the driver says that the batch's writes are
        already durable. A driver that writes asynchronously passes ``persisted=False``,
        keeps going with the next batches while the write is in flight, and calls
        :meth:`persisted` once it is durable (batches must become durable in order).
        """
        if ready is not self._outstanding:
            raise UsageError("advance() must get the Ready returned by the last ready()")
        self._outstanding = None
        if persisted:
            self.persisted(ready)

    def persisted(self, ready: Ready) -> None:
        """``ready``'s writes are durable: count our own promise and acceptances now.

        Until then this node's own vote must not count: a crash could still lose it.
        """
        accepts, ready.self_accepts = ready.self_accepts, []
        promise, ready.self_promise = ready.self_promise, None
        if promise is not None and self.role is Role.CANDIDATE and promise == self.ballot:
            self._votes.add(self.id)
            self._maybe_lead()
        if self.role is Role.LEADER and accepts:
            self._count_own_accepts(accepts)

    def progress_of(self, node: int) -> PeerProgress | None:
        """What this leader knows of follower ``node`` (``None``: not leading, or no
        such peer): how far behind it is, whether its data dir votes."""
        return self._progress.get(node) if self.role is Role.LEADER else None

    @property
    def pending_count(self) -> int:
        """Commands queued here, not yet in a slot."""
        return len(self._pending)

    def describe(self) -> dict[str, object]:
        """A summary for status pages and logs."""
        return {
            "id": self.id,
            "role": self.role.value,
            "leader": self.leader,
            "ballot": str(self.ballot if self.role is Role.LEADER else self.promised),
            "promised": str(self.promised),
            "commit_index": self.commit_index,
            "applied": self.applied,
            "snapshot_slot": self.snapshot_slot,
            "pending": len(self._pending),
            "inflight": len(self._inflight),
            "standing": self.standing.value,
            "membership_version": self.history.version,
            "voters": list(self.config.members),
            "learners": list(self.config.learners),
        }

    def _can_flush(self) -> bool:
        if self.role is Role.LEADER:
            return self._may_open_slot(self.next_slot - 1 - self.commit_index)
        return self.leader is not None
