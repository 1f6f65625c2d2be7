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
        if node_id not in config.members:
            raise ValueError(f"node {node_id} is not a member of {config.members}")
        self.id = node_id
        self.config = config
        self.options = options or Options()
        self._rng = rng
        self._peers = config.peers_of(node_id)
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
        if state is not None:
            self._restore(state)
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
        self._join_acks: set[int] = set()
        self._join_elapsed = 0

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

        # Output being assembled for the next Ready.
        self._out = Ready()
        self._self_accepts: list[tuple[Ballot, int]] = []
        self._self_promise: Ballot | None = None
        self._outstanding: Ready | None = None

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
            # Commands proposed in slots stay in the log; a later leader decides them.
            self._inflight.clear()
            self._progress.clear()

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
