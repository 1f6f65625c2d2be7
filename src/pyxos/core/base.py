"""A replica's state and the helpers every role uses; the roles live in their own modules.

:class:`ReplicaBase` holds every field (the durable part restored from a
:class:`~pyxos.core.ready.HardState`), the output being assembled for the next ``Ready``,
and the few operations all roles share: noting a ballot, raising the promise, storing a
slot, advancing the commit index, falling back to follower. The role modules
(``election``, ``leader``, ``acceptor``, ``reads``, ``joining``) add handlers as mixins;
``replica`` puts them together and dispatches by role.
"""

from __future__ import annotations

from collections import Counter, deque

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.bugs import NO_BUGS, ProtocolBugs
from pyxos.core.config import Config
from pyxos.core.membership import MARK, History, as_change
from pyxos.core.messages import Message, Promise, SlotValue, Value
from pyxos.core.options import Options, Rng, Role
from pyxos.core.progress import Inflight, PeerProgress, ReadRound
from pyxos.core.ready import HardState, Ready, Standing


class ReplicaBase:
    """The fields of one replica, and what every role shares."""

    def __init__(
        self,
        node_id: int,
        config: Config,
        rng: Rng,
        options: Options | None = None,
        state: HardState | None = None,
        bugs: ProtocolBugs = NO_BUGS,
    ) -> None:
        self.id = node_id
        self.options = options or Options()
        self._rng = rng
        self.bugs = bugs
        """Deliberate bugs (tests only; see :mod:`pyxos.core.bugs`)."""

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
        self._out = Ready()
        """Output being assembled for the next Ready."""
        if state is not None and state.membership is not None:
            self.history = History.decode(state.membership)
        else:
            self.history = History.founding(config, self.options.change_delay)
            self._out.persist.membership = self.history.encode()
        """Every configuration still in force (:mod:`pyxos.core.membership`)."""
        if node_id not in self.history.everyone(1) and node_id not in self.history.gone:
            # (A node its own log removed starts, to answer for the slots before that,
            # until a member tells it it is out: see ``leaving``.)
            raise ValueError(f"node {node_id} is not a member of {self.history.latest.ids}")
        self.config: Config = self.history.at(1).config()
        """The configuration of the next slot to be chosen (``commit_index + 1``)."""
        self._peers: tuple[int, ...] = ()
        """Every other member of a configuration in force: whom to send the log to."""
        self._members: frozenset[int] = frozenset()
        self._refused: frozenset[int] = frozenset()
        """Removed nodes no configuration in force lists: their messages are refused."""
        self._epoch_configs: dict[int, Config] = {}
        self._ahead: list[Config] = []
        """The configuration of every epoch from the next slot on (a quorum of each)."""
        self.removed: str | None = None
        """Why this node no longer belongs to the cluster, once a member told it so."""
        self.leaving = False
        """Its own log says a change removed it: it campaigns no more, but goes on
        answering as an acceptor of the slots before the change, until a member of the
        new configuration says it is no member (peers that have not learned the change
        may still need its vote to learn it)."""
        if state is not None:
            self._restore(state)
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
        self._join_acks: set[int] = set()
        self._join_elapsed = 0
        self._not_member_told: dict[int, int] = {}

        # Leader state.
        self.next_slot = self.max_slot + 1
        self._inflight: dict[int, Inflight] = {}
        self._phase1_end = 0
        self._commit_sent = 0
        """The commit index the followers were last told (piggybacked or not)."""
        self._pending: deque[bytes] = deque()
        self._progress: dict[int, PeerProgress] = {}
        self._read_seq = 0
        self._read_rounds: deque[ReadRound] = deque()
        self._read_queue: ReadRound | None = None
        self._forward_reads: list[int] = []
        self._acked_read_seq = -1
        self._found: dict[int, Value] = {}
        """Values phase 1 found above the slots the leader may propose in yet."""
        self._found_top = 0
        self._covered: set[int] = set()
        """Versions of the epochs whose quorum promised this leader's ballot."""
        self._extending: dict[int, dict[int, Promise]] = {}
        """Epoch version -> the promises of its voters, while phase 1 runs again for it."""
        self._extend_tick = 0
        self._queued_change: tuple[Value, int, int] | None = None
        """A change for this leader to propose next: (value, token, node that asked)."""
        self._transfer: tuple[int, int, bool, int, int] | None = None
        """Leader transfer under way: (target, deadline tick, TimeoutNow sent, token,
        node that asked)."""

        self._self_accepts: list[tuple[Ballot, int]] = []
        self._self_promise: Ballot | None = None
        self._outstanding: Ready | None = None

        # The membership the recovered log implies (changes after the history written).
        self._learn_changes(self.snapshot_slot + 1, self.commit_index)
        self._refresh_membership()
        self._advance_commit()

    def _restore(self, state: HardState) -> None:
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

    @property
    def voter(self) -> bool:
        """Whether this node may promise and accept."""
        return self.standing is Standing.VOTER

    # ------------------------------------------------------------------ shared

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
            self._learn_changes(start + 1, c)
            if len(self.history.epochs) > 1:
                self._refresh_membership()

    # ------------------------------------------------------------------ membership

    def _learn_changes(self, first: int, last: int) -> None:
        """Apply, in log order, the membership changes chosen in ``first .. last``."""
        log = self.log
        grew = False
        for slot in range(first, last + 1):
            entry = log.get(slot)
            if entry is None:
                continue
            value = entry.value
            if len(value) != 2 or value[0] != MARK:
                continue
            change = as_change(value)
            if change is None:
                continue
            history, error = self.history.apply(slot, change)
            self._out.changes.append((slot, change, error))
            if history is not self.history:
                self.history = history
                grew = True
                if change.kind == "add" and change.node != self.id:
                    # A new member of that id registers anew (its data dir is new).
                    self.registry.pop(change.node, None)
                    self._out.persist.registry[change.node] = 0
        if grew:
            self._history_grew()

    def _adopt_history(self, history: History) -> None:
        """A newer history from a snapshot (it covers changes compacted away)."""
        if history.version > self.history.version:
            self.history = history
            self._history_grew()

    def _history_grew(self) -> None:
        self.history = self.history.trim(self.commit_index)
        self._out.persist.membership = self.history.encode()
        # Synced, not written lazily like the commit index: the slots of the change may
        # be compacted into a snapshot next, and a restart that recovered the older
        # history could no longer replay them (it would count quorums in a
        # configuration the cluster left).
        self._out.persist.must_sync = True
        for start in (e.start for e in self.history.epochs if e.version not in self._covered):
            # Phase 1 of this ballot said nothing of that configuration's slots.
            self._found = {s: v for s, v in self._found.items() if s < start}
            self._found_top = min(self._found_top, start - 1)
        self._refresh_membership()
        if self.role is Role.LEADER:
            self._start_extensions()

    def _refresh_membership(self) -> None:
        """The configuration of the next slot, and whom to talk to, after the commit index
        or the history moved."""
        history = self.history
        nxt = self.commit_index + 1
        if len(history.epochs) > 1:
            trimmed = history.trim(self.commit_index)
            if trimmed is not history:
                self.history = history = trimmed
                self._out.persist.membership = history.encode()
        self.config = history.at(nxt).config()
        self._ahead = [e.config() for e in history.governing(nxt, 1 << 62)]
        everyone = history.everyone(nxt)
        self._members = frozenset(everyone)
        self._refused = frozenset(history.gone) - self._members
        self._peers = tuple(p for p in everyone if p != self.id)
        self.leaving = self.id not in everyone
        if self.role is not Role.FOLLOWER and self.id not in self.config.members:
            if self.role is Role.LEADER:
                self._step_aside()
            else:
                self._become_follower(None)
        if self.role is Role.LEADER:
            for p in self._peers:
                self._progress.setdefault(p, PeerProgress())
            for p in [p for p in self._progress if p not in self._members]:
                del self._progress[p]

    def _config_of(self, slot: int) -> Config:
        """The configuration that decides ``slot`` (its quorums count the acceptances)."""
        epochs = self.history.epochs
        if len(epochs) == 1:
            return self.config
        epoch = self.history.latest if self.bugs.change_at_once else self.history.at(slot)
        config = self._epoch_configs.get(epoch.version)
        if config is None:
            config = self._epoch_configs[epoch.version] = epoch.config()
        return config

    def _votes_in_all(self, voters: set[int], phase: int) -> bool:
        """Whether ``voters`` hold a quorum of every configuration from the next slot on."""
        if phase == 1:
            return all(c.is_phase1_quorum(voters) for c in self._ahead)
        return all(c.is_phase2_quorum(voters) for c in self._ahead)

    @property
    def member_since(self) -> int:
        """The slot that added this node (0: founding), in the newest configuration in
        force that lists it. Below it, this id belonged to an earlier member whose
        promises this data dir never held: it votes in no slot there."""
        for epoch in reversed(self.history.epochs):
            me = epoch.member(self.id)
            if me is not None:
                return me.since
        return 1 << 62  # in no configuration in force: it votes nowhere

    @property
    def votes_here(self) -> bool:
        """Whether this node is a voter of the next slot's configuration (may campaign)."""
        return (
            self.id in self.config.members
            and not self.leaving
            and self.removed is None
            and self.commit_index + 1 >= self.history.epochs[0].start
        )
        # (The last: a snapshot's history may start above the snapshot, its sender having
        # forgotten the configurations of slots it knows chosen. Until this node has
        # learned those slots it does not know their quorums, so it may not lead there.)

    def _send(self, dst: int, message: Message) -> None:
        self._out.messages.append((dst, message))

    def _send_persisted(self, dst: int, message: Message) -> None:
        self._out.persisted_messages.append((dst, message))

    def _draw_timeout(self) -> int:
        base = self.options.election_ticks << min(self._backoff, self.options.max_backoff_exponent)
        return self._rng.randrange(base, 2 * base)

    def _become_follower(self, leader: int | None, *, backoff: bool = False) -> None:
        """Fall back to follower (of ``leader``, if known), from any role."""
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
            self._found.clear()
            self._found_top = 0
            self._covered.clear()
            self._extending.clear()
            queued, self._queued_change = self._queued_change, None
            if queued is not None:
                self._refuse(queued[2], queued[1], "leadership changed; retry")
            transfer, self._transfer = self._transfer, None
            # Once the target was told to campaign, deposition is the expected outcome
            # (by a ballot whose leader may not be known yet): the asker watches for the
            # target leading. Before that, or to another known leader, it failed.
            if (
                transfer is not None
                and transfer[0] != leader
                and not (transfer[2] and leader is None)
            ):
                self._refuse(transfer[4], transfer[3], "leadership changed; retry")
            # Commands proposed in slots stay in the log; a later leader decides them.
            self._inflight.clear()
            self._progress.clear()

    def _phase1_values_from(self, first: int, promises: list[Promise]) -> dict[int, SlotValue]:
        """Per slot from ``first``: the value known chosen, else the one accepted at the
        highest ballot, among our own log and ``promises`` (an election's, or a leader's
        phase 1 again for a new configuration)."""
        merged: dict[int, SlotValue] = {}
        for slot in range(first, self.max_slot + 1):
            own = self.log.get(slot)
            if own is not None:
                merged[slot] = own
        for promise in promises:
            for sv in promise.accepted:
                if sv.slot < first:
                    continue
                best = merged.get(sv.slot)
                if best is None or (not best.chosen and (sv.chosen or sv.ballot > best.ballot)):
                    merged[sv.slot] = sv
        return merged

    # ------------------------------------------------------------------ across roles
    # Each is defined by the role module named; declared here so every module can call
    # it (the mixins come before this class in Replica's method order).

    def _fail_reads(self) -> None:  # reads
        raise NotImplementedError

    def _check_reads(self) -> None:  # reads
        raise NotImplementedError

    def _open_read_round(self) -> None:  # reads
        raise NotImplementedError

    def _broadcast_commit(self) -> None:  # leader
        raise NotImplementedError

    def _propose_run(self, values: list[Value]) -> None:  # leader
        raise NotImplementedError

    def _start_campaign(self) -> None:  # election
        raise NotImplementedError

    def _step_aside(self) -> None:  # reconfig
        raise NotImplementedError

    def _check_proposable(self, first: int, count: int) -> None:  # reconfig
        raise NotImplementedError

    def _tick_membership(self) -> None:  # reconfig
        raise NotImplementedError

    def _teach(self, dst: int, commit_index: int) -> None:  # acceptor
        raise NotImplementedError

    def _skip_chosen(self) -> None:  # leader
        raise NotImplementedError

    def _proposable_until(self) -> int:  # reconfig
        raise NotImplementedError

    def _propose_found(self) -> None:  # reconfig
        raise NotImplementedError

    def _start_extensions(self) -> None:  # reconfig
        raise NotImplementedError

    def _refuse(self, origin: int, token: int, error: str) -> None:  # reconfig
        raise NotImplementedError
