"""One Multi-Paxos replica: proposer, acceptor and learner in a pure state machine.

Input is ``step(message)``, ``tick()``, ``propose(command)``, ``read_index(token)``;
output is a :class:`~pyxos.core.ready.Ready` (see that module for the driver's duties).
Nothing here touches a clock, a socket, a file or global randomness: the same inputs give
the same outputs, which is what lets the simulator replay any run from its seed.

Roles (one ``role`` field, one handler per message kind):

* follower: accepts proposals from the leader it knows, learns chosen slots from
  heartbeats, forwards client commands to the leader;
* pre-candidate: after an election timeout it first asks for pre-votes, which bind
  nobody, so a node cut off from the others never raises the ballot;
* candidate: runs phase 1 for every slot above its commit index with a fresh ballot;
* leader: re-proposes what phase 1 found, fills holes with no-ops, then runs phase 2 for
  batches of commands over a window of slots in flight.

Safety (one value per slot) rests only on ballots, promises and quorum intersection.
Liveness rests on randomized election timeouts, randomized growing back-off after a
rejection, pre-votes and leader stickiness (a node that heard from a live leader within
the election timeout refuses to help depose it).
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.config import Config
from pyxos.core.messages import (
    NOOP,
    Accepted,
    Chosen,
    Commit,
    CommitAck,
    Forward,
    InstallSnapshot,
    Join,
    JoinReply,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Propose,
    ReadIndexReply,
    ReadIndexRequest,
    Reject,
    SlotValue,
    SnapshotRequest,
    Value,
)
from pyxos.core.ready import HardState, Ready, Standing


class Rng(Protocol):
    """The randomness a replica needs; ``random.Random(seed)`` satisfies it."""

    def randrange(self, start: int, stop: int, /) -> int: ...


class UsageError(RuntimeError):
    """The driver broke the ``ready``/``advance`` contract."""


class InvariantViolation(RuntimeError):
    """The core caught itself about to break a safety rule: stop rather than go on.

    Never raised by bad input from peers (that is ignored); only by a bug, so that a bug
    stops one node instead of silently corrupting the replicated log.
    """


COVERAGE_POINTS = (
    "became_learner",
    "became_voter",
    "candidate_behind_asks_snapshot",
    "catchup_run_sent",
    "check_quorum_steps_down",
    "chosen_deposes_leader",
    "chosen_learned",
    "elected",
    "holes_filled_with_noops",
    "join_refused",
    "join_registered",
    "join_sent",
    "leader_ignores_chosen",
    "nonvoter_ack",
    "prevote_denied",
    "prevote_granted",
    "promise_omits_chosen",
    "read_index_forwarded",
    "read_round_confirmed",
    "reject_sent",
    "rejected_backs_off",
    "retransmitted",
    "snapshot_installed",
    "snapshot_request_received",
    "snapshot_sent_to_lagger",
)
"""The notable paths ``Replica.coverage`` counts; a correct cluster under the simulator's
weather reaches every one (a test checks it). ``propose_conflicts_chosen`` is counted too,
but only a broken proposer can reach it."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRECANDIDATE = "precandidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Options:
    """Tuning knobs, in ticks and counts. Safety never depends on any of them."""

    election_ticks: int = 10
    """Minimum election timeout; the actual one is drawn from [E, 2E)."""
    heartbeat_ticks: int = 2
    window: int = 256
    """Most slots a leader keeps in flight (proposed, not yet chosen)."""
    busy_batch: int = 64
    """While slots are in flight, a new one opens only once this many commands wait.

    Adaptive batching: an idle leader proposes a lone command at once, but under load
    commands gather behind the slot in flight instead of each trickle taking a slot of its
    own. Every slot costs each node a message, a write and an fsync, so on a busy machine
    fewer, fuller slots carry more commands per second (bench/README.md measures it).
    """
    max_batch_commands: int = 4096
    max_batch_bytes: int = 1 << 20
    max_pending: int = 100_000
    """Commands queued for a slot before ``propose`` starts refusing (back-pressure)."""
    retransmit_ticks: int = 4
    max_backoff_exponent: int = 4
    catchup_batch: int = 256
    """Most slots in one catch-up message."""
    max_promise_entries: int = 4096
    """A promise omits chosen slots beyond this many; the candidate catches up instead."""

    def __post_init__(self) -> None:
        if self.election_ticks < 2 or self.heartbeat_ticks < 1:
            raise ValueError("election_ticks must be >= 2 and heartbeat_ticks >= 1")
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError("heartbeat_ticks must be below election_ticks")
        if self.window < 1 or self.max_batch_commands < 1 or self.catchup_batch < 1:
            raise ValueError("window, max_batch_commands and catchup_batch must be >= 1")
        if self.busy_batch < 1:
            raise ValueError("busy_batch must be >= 1")


@dataclass(slots=True)
class _PeerProgress:
    """What a leader knows of one follower."""

    commit_index: int = 0
    read_seq: int = 0
    catchup_sent_to: int = 0
    catchup_tick: int = -(10**9)
    snapshot_tick: int = -(10**9)


@dataclass(slots=True)
class _Inflight:
    """A slot a leader proposed and has not yet seen chosen."""

    value: Value
    acks: set[int]
    sent_tick: int


@dataclass(slots=True)
class _ReadRound:
    """Reads waiting for a quorum to confirm heartbeat round ``seq``."""

    seq: int
    index: int
    local: list[int] = field(default_factory=list)
    remote: dict[int, list[int]] = field(default_factory=dict)


class Replica:
    """A Multi-Paxos node. See the module docstring."""

    def __init__(
        self,
        node_id: int,
        config: Config,
        rng: Rng,
        options: Options | None = None,
        state: HardState | None = None,
    ) -> None:
        if node_id not in config.members:
            raise ValueError(f"node {node_id} is not a member of {config.members}")
        self.id = node_id
        self.config = config
        self.options = options or Options()
        self._rng = rng
        self._peers = config.peers_of(node_id)

        # Acceptor and learner state (the durable part is in HardState).
        self.promised: Ballot = ZERO
        self.log: dict[int, SlotValue] = {}
        self.commit_index = 0
        """Every slot up to here is chosen and its value known locally."""
        self._learn_ballot: Ballot = ZERO
        self._learn_from = 1
        """``_learn_commit`` already examined every slot below this for ``_learn_ballot``
        (a slot stored since moves it back down): without it a follower far behind would
        rescan its whole gap on every message, quadratic work that starves its loop."""
        self.snapshot_slot = 0
        self.applied = 0
        """Last slot handed to the driver in ``Ready.committed``."""
        self.max_slot = 0
        self.standing = Standing.VOTER
        """Whether this data dir may vote; see :class:`~pyxos.core.ready.Standing`."""
        self.incarnation = 0
        self.superseded: int | None = None
        self.registry: dict[int, int] = {}
        """Peers' data-dir incarnations recorded here (``Join``), durable."""
        self.coverage: Counter[str] = Counter()
        """How often each notable path ran: the simulator checks that every one is
        reached, and the runtime exports them as metrics."""
        if state is not None:
            self.standing = state.standing
            self.incarnation = state.incarnation
            self.superseded = state.superseded
            self.registry = dict(state.registry)
            self.promised = state.promised
            for entry in state.entries:
                if entry.slot > state.snapshot_slot:
                    self.log[entry.slot] = entry
                    self.max_slot = max(self.max_slot, entry.slot)
            self.snapshot_slot = state.snapshot_slot
            self.applied = state.snapshot_slot
            self.commit_index = max(state.commit_index, state.snapshot_slot)
            for slot in range(state.snapshot_slot + 1, self.commit_index + 1):
                found = self.log.get(slot)
                if found is None:
                    # A commit index is written with its entries; a gap means a bad store.
                    raise ValueError(f"recovered commit index covers missing slot {slot}")
                if not found.chosen:
                    self.log[slot] = SlotValue(slot, found.ballot, found.value, True)
            self.max_slot = max(self.max_slot, self.commit_index)
        self._advance_commit()
        self.max_seen: Ballot = self.promised

        # Role state.
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.ballot: Ballot = ZERO
        """The ballot this node proposes with while candidate or leader."""
        self._ticks = 0
        self._election_elapsed = 0
        self._leader_contact = 10**9
        """Ticks since the current leader was last heard from."""
        self._backoff = 0
        self._timeout = self._draw_timeout()
        self._votes: set[int] = set()
        self._prevote: Ballot = ZERO
        self._promises: dict[int, Promise] = {}
        self._heartbeat_elapsed = 0
        self._heard: set[int] = set()
        self._quorum_elapsed = 0

        # Leader state.
        self.next_slot = self.max_slot + 1
        self._inflight: dict[int, _Inflight] = {}
        self._phase1_end = 0
        self._commit_sent = 0
        """The commit index the followers were last told (piggybacked or not)."""
        self._pending: deque[bytes] = deque()
        self._progress: dict[int, _PeerProgress] = {}
        self._join_acks: set[int] = set()
        self._join_elapsed = 0
        self._read_seq = 0
        self._read_rounds: deque[_ReadRound] = deque()
        self._read_queue: _ReadRound | None = None
        self._read_round_open = False
        self._forward_reads: list[int] = []
        self._acked_read_seq = -1

        # Output being assembled for the next Ready.
        self._out = Ready()
        self._self_accepts: list[tuple[Ballot, int]] = []
        self._self_promise: Ballot | None = None
        self._outstanding: Ready | None = None
        # Bound per instance, so that a subclass's override is the one called.
        self._handlers: dict[type, Callable[[Any], None]] = {
            kind: getattr(self, name) for kind, name in _HANDLERS.items()
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
            return
        if self.standing is not Standing.VOTER:
            # A non-voter never campaigns; one still joining keeps asking.
            if self.standing is Standing.JOINING:
                self._join_elapsed += 1
                if self._join_elapsed >= self.options.election_ticks:
                    self._ask_to_join()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            if self.role is Role.FOLLOWER:
                self._start_prevote()
            else:
                # Neither pre-vote nor phase 1 finished in time: back off, then retry.
                self._become_follower(None, backoff=True)

    def propose(self, command: bytes) -> bool:
        """Submit a client command.

        Returns False when the command cannot be taken now (no known leader, or too many
        queued): the caller should retry later or elsewhere. True means it was queued or
        forwarded, not that it will be chosen: the caller learns that from ``committed``.
        """
        if len(self._pending) >= self.options.max_pending:
            return False
        if self.role is Role.LEADER:
            self._pending.append(command)
            return True
        if self.leader is None:
            return False
        self._pending.append(command)
        return True

    def read_index(self, token: int) -> None:
        """Ask for a linearizable read; ``token`` comes back in ``reads`` or ``failed_reads``.

        The leader confirms with a quorum that it still leads, and returns its commit index
        as of the request; the read may be served once this node has applied through it.
        """
        if self.role is Role.LEADER:
            self._queue_read(token, origin=self.id)
        elif self.leader is not None:
            self._forward_reads.append(token)
        else:
            self._out.failed_reads.append(token)

    def campaign(self) -> None:
        """Start phase 1 now, skipping the pre-vote (leader transfer, duelling tests).

        A node that may not vote (learner, or still joining) does nothing.
        """
        if self.role is not Role.LEADER and self.standing is Standing.VOTER:
            self._start_campaign()

    @property
    def voter(self) -> bool:
        """Whether this node may promise and accept."""
        return self.standing is Standing.VOTER

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
        if src == self.id or src not in self.config.members:
            return
        handler = self._handlers.get(type(message))
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
            or self.commit_index > self.applied
            or self._forward_reads
            or (self._pending and self._can_flush())
        )

    def ready(self) -> Ready:
        """Collect the work accumulated since the last ``advance``. Call ``advance`` next."""
        if self._outstanding is not None:
            raise UsageError("ready() called again before advance()")
        self._flush_pending()
        self._flush_forward_reads()
        if self.role is Role.LEADER and self.commit_index > self._commit_sent:
            # Tell followers at once rather than at the next heartbeat: a follower answers
            # its own clients only when it learns that their commands are chosen.
            self._commit_sent = self.commit_index
            notice = Commit(self.id, self.ballot, self.commit_index, self._read_seq)
            for peer in self._peers:
                self._send(peer, notice)
        out = self._out
        if self.commit_index > self.applied:
            for slot in range(self.applied + 1, self.commit_index + 1):
                out.committed.append((slot, self.log[slot].value))
            self.applied = self.commit_index
        persist = out.persist
        if (
            persist.entries
            or persist.promised is not None
            or persist.snapshot is not None
            or persist.standing is not None
            or persist.registry
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
            chosen_any = False
            for ballot, slot in accepts:
                if ballot == self.ballot:
                    chosen_any |= self._count_accept(slot, self.id)
            if chosen_any:
                self._advance_commit()
                self._after_commit()

    @property
    def pending_count(self) -> int:
        """Commands queued here, not yet in a slot."""
        return len(self._pending)

    # ------------------------------------------------------------------ elections

    def _draw_timeout(self) -> int:
        base = self.options.election_ticks << min(self._backoff, self.options.max_backoff_exponent)
        return self._rng.randrange(base, 2 * base)

    def _become_follower(self, leader: int | None, *, backoff: bool = False) -> None:
        was_leader = self.role is Role.LEADER
        self.role = Role.FOLLOWER
        self.leader = leader
        self._acked_read_seq = -1  # read rounds are numbered per leader
        self._votes.clear()
        self._promises.clear()
        if backoff:
            self._backoff += 1
        elif leader is not None:
            self._backoff = 0
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()
        if was_leader:
            self._fail_reads()
            # Commands proposed in slots stay in the log; a later leader decides them.
            self._inflight.clear()
            self._progress.clear()

    def _start_prevote(self) -> None:
        self.role = Role.PRECANDIDATE
        self.leader = None
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()
        self._votes = {self.id}
        self._prevote = self.max_seen.successor(self.id)
        for peer in self._peers:
            self._send(peer, PreVote(self.id, self._prevote))
        if self.config.is_phase1_quorum(self._votes):
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
        # Our own promise counts only once it is durable (see advance()).
        self._self_promise = self.ballot
        prepare = Prepare(self.id, self.ballot, self.commit_index + 1)
        for peer in self._peers:
            self._send(peer, prepare)

    def _on_prevote(self, m: PreVote) -> None:
        live_leader = self.role is Role.LEADER or (
            self.leader is not None and self._leader_contact < self.options.election_ticks
        )
        granted = not live_leader and self.standing is Standing.VOTER
        self.coverage["prevote_granted" if granted else "prevote_denied"] += 1
        self._send(m.src, PreVoteReply(self.id, m.ballot, granted, self.promised))

    def _on_prevote_reply(self, m: PreVoteReply) -> None:
        self._see(m.promised)
        if self.role is not Role.PRECANDIDATE or not m.granted or m.ballot != self._prevote:
            return
        self._votes.add(m.src)
        if self.config.is_phase1_quorum(self._votes):
            self._start_campaign()

    def _on_prepare(self, m: Prepare) -> None:
        self._see(m.ballot)
        if self.standing is not Standing.VOTER:
            return  # promises nothing: its state may be missing what it once promised
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
        promise = Promise(self.id, m.ballot, accepted, self.commit_index, omitted)
        self._send_persisted(m.src, promise)

    def _on_promise(self, m: Promise) -> None:
        if self.role is not Role.CANDIDATE or m.ballot != self.ballot:
            return
        self._promises[m.src] = m
        self._votes.add(m.src)
        self._maybe_lead()

    def _maybe_lead(self) -> None:
        if not self.config.is_phase1_quorum(self._votes) or self.id not in self._votes:
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
        merged: dict[int, SlotValue] = {}
        for slot in range(first, self.max_slot + 1):
            own = self.log.get(slot)
            if own is not None:
                merged[slot] = own
        for promise in self._promises.values():
            for sv in promise.accepted:
                if sv.slot < first:
                    continue
                best = merged.get(sv.slot)
                if best is None or (not best.chosen and (sv.chosen or sv.ballot > best.ballot)):
                    merged[sv.slot] = sv
        top = max(merged, default=first - 1)
        self.coverage["elected"] += 1
        if any(s not in merged for s in range(first, top + 1)):
            self.coverage["holes_filled_with_noops"] += 1
        self._become_leader()
        self._phase1_end = top
        values = [merged[s].value if s in merged else NOOP for s in range(first, top + 1)]
        self.next_slot = first
        self._propose_run(values)

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
        self._progress = {p: _PeerProgress() for p in self._peers}
        self._read_rounds.clear()
        self._read_queue = None
        self._read_round_open = False
        self._broadcast_commit()

    # ------------------------------------------------------------------ leader

    def _tick_leader(self) -> None:
        self._leader_contact = 0
        self._heartbeat_elapsed += 1
        self._quorum_elapsed += 1
        if self._quorum_elapsed >= self.options.election_ticks:
            # Check quorum: a leader that has not heard from a quorum steps down, so that
            # clients on its side of a partition are not told it still leads.
            if not self.config.is_phase2_quorum(self._heard):
                self.coverage["check_quorum_steps_down"] += 1
                self._become_follower(None)
                return
            self._heard = {self.id}
            self._quorum_elapsed = 0
        if self._heartbeat_elapsed >= self.options.heartbeat_ticks:
            self._broadcast_commit()
        self._retransmit()

    def _broadcast_commit(self) -> None:
        self._heartbeat_elapsed = 0
        self._read_seq += 1
        if self._read_queue is not None:
            self._read_queue.seq = self._read_seq
            self._read_rounds.append(self._read_queue)
            self._read_queue = None
        self._read_round_open = True
        hb = Commit(self.id, self.ballot, self.commit_index, self._read_seq)
        self._commit_sent = self.commit_index
        for peer in self._peers:
            self._send(peer, hb)
        self._check_reads()

    def _can_flush(self) -> bool:
        if self.role is Role.LEADER:
            return self._may_open_slot(self.next_slot - 1 - self.commit_index)
        return self.leader is not None

    def _may_open_slot(self, in_flight: int) -> bool:
        """Whether the leader may propose pending commands in one more slot now."""
        if in_flight == 0:
            return True
        return in_flight < self.options.window and len(self._pending) >= self.options.busy_batch

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        if self.role is not Role.LEADER:
            if self.leader is not None:
                commands = tuple(self._pending)
                self._pending.clear()
                self._send(self.leader, Forward(self.id, commands))
            return
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
        for i, value in enumerate(values):
            slot = first + i
            entry = SlotValue(slot, self.ballot, value)
            self._store(entry)
            self._inflight[slot] = _Inflight(value, set(), self._ticks)
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
        if slot <= self.commit_index:
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

    def _on_accepted(self, m: Accepted) -> None:
        if self.role is not Role.LEADER or m.ballot != self.ballot:
            return
        self._heard.add(m.src)
        chosen_any = False
        for slot in range(m.first_slot, m.last_slot + 1):
            chosen_any |= self._count_accept(slot, m.src)
        if chosen_any:
            self._advance_commit()
            self._after_commit()

    def _count_accept(self, slot: int, voter: int) -> bool:
        flight = self._inflight.get(slot)
        if flight is None:
            return False
        flight.acks.add(voter)
        if not self.config.is_phase2_quorum(flight.acks):
            return False
        del self._inflight[slot]
        entry = self.log.get(slot)
        if entry is not None and not entry.chosen:
            self.log[slot] = SlotValue(slot, entry.ballot, entry.value, True)
        return True

    def _after_commit(self) -> None:
        """A leader's commit index moved: reads may be ready, the window has room."""
        self._check_reads()

    def _on_reject(self, m: Reject) -> None:
        self._see(m.promised)
        leading = self.role in (Role.CANDIDATE, Role.LEADER)
        if leading and m.ballot == self.ballot and m.promised > self.ballot:
            # Someone promised a higher ballot: stop, and back off for a random, growing
            # time so that two proposers do not keep pre-empting each other.
            self.coverage["rejected_backs_off"] += 1
            self._become_follower(None, backoff=True)

    def _on_commit_ack(self, m: CommitAck) -> None:
        if self.role is not Role.LEADER or m.ballot != self.ballot:
            return
        progress = self._progress.get(m.src)
        if progress is None:
            return
        # The latest report, not the highest: a follower that restarted may have lost the
        # lazily written tail of its commit index and needs those slots again.
        progress.commit_index = m.commit_index
        if m.voter:
            # Only a voter's ack says it still promises our ballot.
            self._heard.add(m.src)
            progress.read_seq = max(progress.read_seq, m.read_seq)
        else:
            self.coverage["nonvoter_ack"] += 1
        self._check_reads()
        self._catch_up(m.src, progress)

    def _catch_up(self, peer: int, progress: _PeerProgress) -> None:
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

    # ------------------------------------------------------------------ reads

    def _queue_read(self, token: int, origin: int) -> None:
        round_ = self._read_queue
        if round_ is None:
            round_ = self._read_queue = _ReadRound(seq=0, index=self.commit_index)
        # The index must cover every write committed before this read arrived.
        round_.index = self.commit_index
        if origin == self.id:
            round_.local.append(token)
        else:
            round_.remote.setdefault(origin, []).append(token)
        # Start a confirmation round at once unless one is already out: reads that come
        # in meanwhile share the next one (batching without a timer).
        if not self._read_rounds:
            self._broadcast_commit()

    def _check_reads(self) -> None:
        if self.role is not Role.LEADER:
            return
        while self._read_rounds:
            round_ = self._read_rounds[0]
            confirmed = {self.id} | {
                p for p, pr in self._progress.items() if pr.read_seq >= round_.seq
            }
            if not self.config.is_phase2_quorum(confirmed):
                return
            # A new leader serves no read until everything phase 1 found is chosen:
            # otherwise a value chosen by its predecessor could be missing (a stale read).
            if self.commit_index < self._phase1_end:
                return
            self._read_rounds.popleft()
            self.coverage["read_round_confirmed"] += 1
            index = max(round_.index, self._phase1_end)
            self._out.reads.extend((t, index) for t in round_.local)
            for origin, tokens in round_.remote.items():
                self._send(origin, ReadIndexReply(self.id, tuple(tokens), index))
        if self._read_queue is not None:
            self._broadcast_commit()

    def _fail_reads(self) -> None:
        rounds = list(self._read_rounds)
        if self._read_queue is not None:
            rounds.append(self._read_queue)
        for round_ in rounds:
            self._out.failed_reads.extend(round_.local)
            for origin, tokens in round_.remote.items():
                self._send(origin, ReadIndexReply(self.id, tuple(tokens), -1))
        self._read_rounds.clear()
        self._read_queue = None

    def _flush_forward_reads(self) -> None:
        if not self._forward_reads:
            return
        tokens, self._forward_reads = self._forward_reads, []
        if self.role is Role.LEADER:
            for t in tokens:
                self._queue_read(t, self.id)
        elif self.leader is not None:
            self.coverage["read_index_forwarded"] += 1
            self._send(self.leader, ReadIndexRequest(self.id, tuple(tokens)))
        else:
            self._out.failed_reads.extend(tokens)

    def _on_forward(self, m: Forward) -> None:
        if self.role is not Role.LEADER:
            # Not passed on: two nodes with stale views could bounce it forever. The
            # client times out and retries with the same request id.
            return
        room = self.options.max_pending - len(self._pending)
        self._pending.extend(m.commands[: max(room, 0)])

    def _on_read_index_request(self, m: ReadIndexRequest) -> None:
        if self.role is not Role.LEADER:
            self._send(m.src, ReadIndexReply(self.id, m.tokens, -1))
            return
        for t in m.tokens:
            self._queue_read(t, m.src)

    def _on_read_index_reply(self, m: ReadIndexReply) -> None:
        if m.index < 0:
            self._out.failed_reads.extend(m.tokens)
        else:
            self._out.reads.extend((t, m.index) for t in m.tokens)

    # ------------------------------------------------------------------ acceptor

    def _on_propose(self, m: Propose) -> None:
        self._see(m.ballot)
        if m.ballot < self.promised:
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
        elif self.standing is Standing.VOTER:
            self._send_persisted(m.src, Accepted(self.id, m.ballot, m.first_slot, last))
        self._learn_commit(m.ballot, m.commit_index)

    def _reject(self, dst: int, ballot: Ballot) -> None:
        """NACK a proposer below our promise; a non-voter promised nothing, so it is quiet."""
        if self.standing is Standing.VOTER:
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
            self._send(m.src, self._commit_ack(m.ballot, m.read_seq))

    def _commit_ack(self, ballot: Ballot, read_seq: int) -> CommitAck:
        return CommitAck(self.id, ballot, self.commit_index, read_seq, self.voter)

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
            elif entry is None or not entry.chosen:
                # A hole or an older acceptance: the leader's catch-up fills it.
                continue
        if changed:
            self._advance_commit()

    def _learn_under(self, ballot: Ballot) -> bool:
        """Before learning chosen slots from a peer whose promise is ``ballot``: raise ours.

        Every slot the peer knows chosen was chosen at or below its promise, so from now
        on we may only accept proposals that carry those very values (P2c). A leader or
        candidate below that promise is deposed and steps down; one at or above it never
        needs to be told (its own phase 1 found every chosen value) and ignores it.
        Returns whether to go on and learn.
        """
        self._see(ballot)
        if self.role in (Role.LEADER, Role.CANDIDATE):
            if ballot <= self.ballot:
                self.coverage["leader_ignores_chosen"] += 1
                return False
            self.coverage["chosen_deposes_leader"] += 1
            self._become_follower(None)
        if ballot > self.promised:
            self._set_promised(ballot)
        return True

    def _on_chosen(self, m: Chosen) -> None:
        if not self._learn_under(m.ballot):
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
            self._send(m.src, self._commit_ack(m.ballot, 0))

    def _on_snapshot_request(self, m: SnapshotRequest) -> None:
        self.coverage["snapshot_request_received"] += 1
        if self.snapshot_slot > m.commit_index:
            self._out.snapshots_to_send.append(m.src)
        elif self.commit_index > m.commit_index:
            first = m.commit_index + 1
            last = min(self.commit_index, first + self.options.catchup_batch - 1)
            values = tuple(self.log[s].value for s in range(first, last + 1))
            self._send(m.src, Chosen(self.id, self.promised, first, values, self.commit_index))

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        if m.last_slot <= self.commit_index or not self._learn_under(m.ballot):
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
        self._advance_commit()

    # ------------------------------------------------------------------ joining

    def _ask_to_join(self) -> None:
        """Ask every peer that has not yet answered to register our data dir."""
        self._join_elapsed = 0
        if len(self._join_acks) >= self.config.registration_quorum():
            self._become_voter()
            return
        self.coverage["join_sent"] += 1
        for peer in self._peers:
            if peer not in self._join_acks:
                self._send(peer, Join(self.id, self.incarnation))

    def _on_join(self, m: Join) -> None:
        known = self.registry.get(m.src)
        if known is None:
            # Recorded durably before the grant leaves (a persisted message).
            self.coverage["join_registered"] += 1
            self.registry[m.src] = m.incarnation
            self._out.persist.registry[m.src] = m.incarnation
            known = m.incarnation
        if known == m.incarnation:
            self._send_persisted(m.src, JoinReply(self.id, m.incarnation, True, known))
        else:
            self.coverage["join_refused"] += 1
            self._send(m.src, JoinReply(self.id, m.incarnation, False, known))

    def _on_join_reply(self, m: JoinReply) -> None:
        if self.standing is not Standing.JOINING or m.incarnation != self.incarnation:
            return
        if not m.granted:
            # A peer holds an older data dir of ours: we may have lost what it promised.
            self.coverage["became_learner"] += 1
            self.standing = Standing.LEARNER
            self.superseded = m.known
            self._out.persist.standing = Standing.LEARNER
            self._out.persist.superseded = m.known
            return
        self._join_acks.add(m.src)
        if len(self._join_acks) >= self.config.registration_quorum():
            self._become_voter()

    def _become_voter(self) -> None:
        self.coverage["became_voter"] += 1
        self.standing = Standing.VOTER
        self._out.persist.standing = Standing.VOTER
        self._join_acks.clear()
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()

    # ------------------------------------------------------------------ helpers

    def _see(self, ballot: Ballot) -> None:
        self.max_seen = max(self.max_seen, ballot)

    def _set_promised(self, ballot: Ballot) -> None:
        self.promised = ballot
        self._see(ballot)
        self._out.persist.promised = ballot

    def _store(self, entry: SlotValue) -> None:
        self.log[entry.slot] = entry
        self._learn_from = min(self._learn_from, entry.slot)
        self._out.persist.entries.append(entry)

    def _advance_commit(self) -> None:
        start = self.commit_index
        log = self.log
        c = start
        while True:
            entry = log.get(c + 1)
            if entry is None or not entry.chosen:
                break
            c += 1
        if c != start:
            self.commit_index = c
            self._out.persist.commit_index = c

    def _send(self, dst: int, message: Message) -> None:
        self._out.messages.append((dst, message))

    def _send_persisted(self, dst: int, message: Message) -> None:
        self._out.persisted_messages.append((dst, message))

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
        }


_HANDLERS: dict[type, str] = {
    PreVote: "_on_prevote",
    PreVoteReply: "_on_prevote_reply",
    Prepare: "_on_prepare",
    Promise: "_on_promise",
    Propose: "_on_propose",
    Accepted: "_on_accepted",
    Reject: "_on_reject",
    Commit: "_on_commit",
    CommitAck: "_on_commit_ack",
    Chosen: "_on_chosen",
    Forward: "_on_forward",
    ReadIndexRequest: "_on_read_index_request",
    ReadIndexReply: "_on_read_index_reply",
    SnapshotRequest: "_on_snapshot_request",
    InstallSnapshot: "_on_install_snapshot",
    Join: "_on_join",
    JoinReply: "_on_join_reply",
}
"""One handler per message kind, like etcd raft's step functions."""
