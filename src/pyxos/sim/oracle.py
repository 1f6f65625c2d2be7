"""The simulator's ghost: what every acceptor accepted, hence what is really chosen.

The definition of consensus, checked from outside the nodes: a value is chosen in a slot
once a phase-2 quorum of acceptors accepted it at one ballot. The simulator reports every
proposal and every vote as the messages leave; the ghost computes the chosen value of each
slot from them alone, never from what a node believes, and then holds every node's
beliefs against it.

Two kinds of checks:

* end to end (always on): no two values are ever chosen in one slot; every value a node
  applies, or installs from a snapshot, is the chosen one of its slot. Membership
  changes count: the ghost replays them from what it knows is chosen, and a slot is
  chosen only by a quorum of the configuration that slot really has, never by one a node
  believed (so a leader that counted the wrong quorum is caught by a second value, or
  by a node applying a value no real quorum accepted);
* white box (``white_box=True``): the protocol's own rules, each of which would be broken
  on the way to a disagreement. No two proposals share a slot and ballot with different
  values; a proposal above the ballot a value was chosen at carries that value (Paxos's
  P2c); a leader's commit notice at ballot b covers only slots whose value at b is the
  chosen one; every chosen claim (a catch-up run, a promise entry, a node's commit index)
  is the chosen value; an acceptor never promises or accepts below what it promised
  before, keeps its acceptances across restarts, and never votes again under a data dir
  other than the one it first voted with (until it is removed and added again); and no
  proposal comes before the configuration of its slot is decided.

The broken-replica tests turn the white-box checks off, to show that the end-to-end
checks alone still catch every planted bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.config import Config
from pyxos.core.membership import History, as_change
from pyxos.core.messages import SlotValue, Value


@dataclass(slots=True)
class Oracle:
    history: History
    """The founding membership; the ghost replays every chosen change onto it."""
    white_box: bool = True
    violation: str | None = None
    proposals: dict[int, dict[Ballot, Value]] = field(default_factory=dict)
    """slot -> ballot -> the one value proposed there."""
    votes: dict[tuple[int, Ballot], set[int]] = field(default_factory=dict)
    chosen: dict[int, tuple[Ballot, Value]] = field(default_factory=dict)
    """slot -> (the lowest ballot a quorum accepted it at, the value)."""
    commit_claims: dict[Ballot, int] = field(default_factory=dict)
    """The highest commit notice each leader's ballot sent (checked up to there)."""
    max_promised_sent: dict[tuple[int, int], Ballot] = field(default_factory=dict)
    """(node, incarnation) -> the highest ballot it promised or accepted at."""
    accepted_sent: dict[tuple[int, int], dict[int, Ballot]] = field(default_factory=dict)
    voted_with: dict[tuple[int, int], int] = field(default_factory=dict)
    """(node, the slot that added it) -> the incarnation (data dir) it first voted with:
    a node removed and added again is a new member, which may vote with a new one."""
    checks: int = 0
    prefix: int = 0
    """Every slot up to here is chosen, and its changes replayed into ``history``."""
    undecided: set[tuple[int, Ballot]] = field(default_factory=set)
    """Votes in slots whose configuration the ghost does not know yet: counted later."""
    configs: dict[int, Config] = field(default_factory=dict)
    """Epoch version -> its configuration (cache)."""

    def config_of(self, slot: int) -> Config | None:
        """The real configuration of ``slot``, once every slot it depends on is chosen."""
        if slot - self.history.delay > self.prefix:
            return None
        epoch = self.history.at(slot)
        config = self.configs.get(epoch.version)
        if config is None:
            config = self.configs[epoch.version] = epoch.config()
        return config

    def fail(self, what: str) -> None:
        if self.violation is None:
            self.violation = what

    # ------------------------------------------------------------------ events

    def proposed(self, node: int, ballot: Ballot, first: int, values: tuple[Value, ...]) -> None:
        """``node`` proposed ``values`` from slot ``first`` at ``ballot``."""
        for i, value in enumerate(values):
            slot = first + i
            at_slot = self.proposals.setdefault(slot, {})
            known = at_slot.get(ballot)
            if known is None:
                at_slot[ballot] = value
            elif known != value and self.white_box:
                self.fail(f"two proposals at slot {slot} ballot {ballot}: {known!r}, {value!r}")
            if self.white_box:
                if slot - self.history.delay > self.prefix:
                    self.fail(
                        f"node {node} proposed slot {slot} at {ballot} before slot "
                        f"{slot - self.history.delay} was chosen (its configuration unknown)"
                    )
                chosen = self.chosen.get(slot)
                if chosen is not None and chosen[0] < ballot and chosen[1] != value:
                    self.fail(
                        f"node {node} proposed {value!r} in slot {slot} at {ballot}, but "
                        f"{chosen[1]!r} was chosen there at {chosen[0]} (P2c)"
                    )
                if slot <= self.commit_claims.get(ballot, 0):
                    self.fail(f"node {node} proposed slot {slot} below its own commit notice")

    def voted(
        self,
        node: int,
        incarnation: int,
        ballot: Ballot,
        slots: range,
        *,
        own: bool = False,
        since: int = 0,
    ) -> None:
        """``node`` durably accepted ``slots`` at ``ballot``: its Accepted left, or (``own``)
        a leader's acceptance of its own proposal became durable. The latter was made when
        it proposed, before any higher promise it may have sent since, so it raises no
        floor."""
        if not own:
            self._vote_floor(node, incarnation, ballot, "Accepted", since)
        sent = self.accepted_sent.setdefault((node, incarnation), {})
        for slot in slots:
            if sent.get(slot, ZERO) < ballot:
                sent[slot] = ballot
            voters = self.votes.setdefault((slot, ballot), set())
            voters.add(node)
            self._count(slot, ballot)

    def _count(self, slot: int, ballot: Ballot) -> None:
        config = self.config_of(slot)
        if config is None:
            self.undecided.add((slot, ballot))
            return
        if config.is_phase2_quorum(self.votes[(slot, ballot)]):
            value = self.proposals.get(slot, {}).get(ballot)
            if value is None:
                self.fail(f"slot {slot}: a quorum accepted at {ballot}, which nobody proposed")
            else:
                self._chosen(slot, ballot, value)

    def promised(self, node: int, incarnation: int, ballot: Ballot, since: int = 0) -> None:
        """``node``'s Promise at ``ballot`` left."""
        self._vote_floor(node, incarnation, ballot, "Promise", since)

    def _vote_floor(
        self, node: int, incarnation: int, ballot: Ballot, kind: str, since: int = 0
    ) -> None:
        if not self.white_box:
            return
        first = self.voted_with.setdefault((node, since), incarnation)
        if first != incarnation:
            self.fail(
                f"node {node} sent {kind} from data dir {incarnation:x}, after voting with "
                f"{first:x}: it may have lost what it promised"
            )
        floor = self.max_promised_sent.get((node, incarnation), ZERO)
        if ballot < floor:
            self.fail(f"node {node} sent {kind} at {ballot} after promising {floor}")
        else:
            self.max_promised_sent[(node, incarnation)] = ballot

    def _chosen(self, slot: int, ballot: Ballot, value: Value) -> None:
        known = self.chosen.get(slot)
        if known is not None:
            if known[1] != value:
                self.fail(
                    f"two values chosen in slot {slot}: {known[1]!r} at {known[0]}, "
                    f"{value!r} at {ballot}"
                )
            elif ballot < known[0]:
                self.chosen[slot] = (ballot, value)
            return
        self.chosen[slot] = (ballot, value)
        if slot == self.prefix + 1:
            self._replay()
        if self.white_box:
            for b, proposal in self.proposals.get(slot, {}).items():
                if b > ballot and proposal != value:
                    self.fail(
                        f"slot {slot}: proposal {proposal!r} at {b} above the chosen {value!r}"
                    )

    def _replay(self) -> None:
        """Extend the chosen prefix, replaying its changes; count the votes that waited."""
        while self.prefix + 1 in self.chosen:
            self.prefix += 1
            change = as_change(self.chosen[self.prefix][1])
            if change is not None:
                self.history, _ = self.history.apply(self.prefix, change)
        if self.undecided:
            ready = sorted(v for v in self.undecided if v[0] - self.history.delay <= self.prefix)
            for vote in ready:
                self.undecided.discard(vote)
                self._count(*vote)

    def commit_notice(self, node: int, ballot: Ballot, commit_index: int) -> None:
        """Leader ``node`` told its followers that slots up to ``commit_index`` are chosen
        (a follower that accepted a slot at ``ballot`` then marks that value chosen)."""
        if not self.white_box:
            return
        before = self.commit_claims.get(ballot, 0)
        if commit_index <= before:
            return
        self.commit_claims[ballot] = commit_index
        for slot in range(before + 1, commit_index + 1):
            proposal = self.proposals.get(slot, {}).get(ballot)
            if proposal is not None:
                self.claimed(node, slot, proposal, f"commit notice at {ballot}")

    def claimed(self, node: int, slot: int, value: Value, what: str) -> None:
        """``node`` said (in a message, or in its commit index) that ``value`` is chosen."""
        if not self.white_box:
            return
        self.checks += 1
        chosen = self.chosen.get(slot)
        if chosen is None:
            self.fail(f"node {node}'s {what} claims slot {slot} chosen before any quorum")
        elif chosen[1] != value:
            self.fail(f"node {node}'s {what} claims {value!r} in slot {slot}, chosen {chosen[1]!r}")

    def applied(self, node: int, slot: int, value: Value, how: str = "applied") -> None:
        """End to end: what the state machine of ``node`` holds for ``slot``."""
        self.checks += 1
        chosen = self.chosen.get(slot)
        if chosen is None:
            self.fail(f"node {node} {how} slot {slot}, which no quorum accepted")
        elif chosen[1] != value:
            self.fail(f"slot {slot}: node {node} {how} {value!r}, chosen was {chosen[1]!r}")

    def restarted(
        self,
        node: int,
        incarnation: int,
        promised: Ballot,
        snapshot_slot: int,
        log: dict[int, SlotValue],
    ) -> None:
        """A node restarted from its own data dir: it kept every promise and acceptance
        (a slot its snapshot covers, or one it knows chosen, keeps what matters)."""
        if not self.white_box:
            return
        floor = self.max_promised_sent.get((node, incarnation), ZERO)
        if promised < floor:
            self.fail(f"node {node} restarted with promise {promised} below the {floor} it sent")
        for slot, ballot in self.accepted_sent.get((node, incarnation), {}).items():
            if slot <= snapshot_slot:
                continue
            entry = log.get(slot)
            if entry is None or (entry.ballot < ballot and not entry.chosen):
                self.fail(f"node {node} lost its acceptance of slot {slot} at {ballot}")
                return
