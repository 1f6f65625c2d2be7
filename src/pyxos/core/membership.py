"""Membership through the log: who votes and who only learns, at every slot.

The method is Lamport's alpha window: a change chosen in slot ``i`` governs the slots from
``i + delay`` on. A leader never proposes in slot ``s`` before every slot up to
``s - delay`` is chosen and known to it, so it always knows the configuration of the slot
it proposes in; each slot is then a single-decree Paxos instance over a fixed set of
acceptors, and safety is Paxos's. A leader whose commit index crosses a change runs
phase 1 again, at its own ballot, with a quorum of the new configuration, for the slots
that configuration governs, before it proposes there (docs/PROTOCOL.md, "Membership").

Everything here is a pure value: :class:`History` is the list of :class:`Epoch` objects
(a configuration and the first slot it governs), replayed identically on every node from
the chosen log, carried in snapshots, and written whole when it changes. ``delay`` is
fixed when the cluster is founded, since every node must compute the same slot for a
change to take effect.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import msgspec

from pyxos.core.config import Config
from pyxos.core.messages import Value

MARK = b"\x00pyxos:membership\x00"
"""The first command of a slot value that is a membership change (alone in its slot)."""

KINDS = ("add", "promote", "remove")


class Member(msgspec.Struct, frozen=True, array_like=True):
    """One node of the cluster: its id, peer address, and whether it votes."""

    id: int
    address: str = ""
    voter: bool = True
    since: int = 0
    """The slot of the change that added it (0: a founding member). A node that is
    removed and added again is a new member: its old registrations do not count."""
    auto_promote: bool = False
    """Added to become a voter: the leader promotes it once it has caught up."""
    registrars: tuple[int, ...] = ()
    """The voters when it was added (the founding voters for a founding member): a data
    dir of this member votes once more than half of them hold its incarnation. A fixed
    set per member, so that any two such majorities share a peer, however the voters
    change later."""


class Change(msgspec.Struct, frozen=True, array_like=True):
    """One membership change, as proposed (validated again when chosen)."""

    kind: str
    node: int
    address: str = ""
    auto_promote: bool = False
    base: int = -1
    """The membership version it was made against (-1: whatever is current)."""
    token: int = 0
    """The caller's, to recognise its own change among the chosen ones."""


class Epoch(msgspec.Struct, frozen=True, array_like=True):
    """A configuration and the first slot it governs."""

    start: int
    version: int
    """The slot of the change that made it (0 for the founding membership)."""
    members: tuple[Member, ...]
    q1: int = 0
    q2: int = 0

    def member(self, node: int) -> Member | None:
        for m in self.members:
            if m.id == node:
                return m
        return None

    @property
    def voters(self) -> tuple[int, ...]:
        return tuple(sorted(m.id for m in self.members if m.voter))

    @property
    def learners(self) -> tuple[int, ...]:
        return tuple(sorted(m.id for m in self.members if not m.voter))

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(m.id for m in self.members))

    def config(self) -> Config:
        return Config(self.voters, self.q1, self.q2, self.learners)


class History(msgspec.Struct, frozen=True, array_like=True):
    """Every configuration that still governs a slot not yet known chosen, oldest first."""

    delay: int
    epochs: tuple[Epoch, ...]
    gone: tuple[int, ...] = ()
    """Nodes removed (and not added back): their messages are refused. A node that is
    simply unknown may belong to a change not learned here yet, and is heard."""

    @classmethod
    def founding(
        cls, config: Config, delay: int, addresses: dict[int, str] | None = None
    ) -> History:
        """The membership a new cluster starts with (``--cluster``)."""
        if delay < 1:
            raise ValueError("the membership delay must be at least 1")
        addresses = addresses or {}
        voters = tuple(config.members)
        members = [Member(i, addresses.get(i, ""), True, 0, False, voters) for i in voters]
        members += [
            Member(i, addresses.get(i, ""), False, 0, False, voters) for i in config.learners
        ]
        explicit = config.q1 != config.members_majority() or config.q2 != config.members_majority()
        q1, q2 = (config.q1, config.q2) if explicit else (0, 0)
        return cls(delay, (Epoch(1, 0, tuple(sorted(members, key=lambda m: m.id)), q1, q2),))

    @property
    def latest(self) -> Epoch:
        return self.epochs[-1]

    @property
    def version(self) -> int:
        return self.latest.version

    def at(self, slot: int) -> Epoch:
        """The configuration of ``slot`` (known once every slot up to ``slot - delay`` is)."""
        epochs = self.epochs
        if len(epochs) == 1:
            return epochs[0]
        i = bisect.bisect_right([e.start for e in epochs], slot) - 1
        return epochs[max(i, 0)]

    def governing(self, first: int, last: int) -> list[Epoch]:
        """The epochs that govern some slot of ``first .. last``."""
        return [e for e in self.epochs if e.start <= last and self._end(e) >= first]

    def end_of(self, epoch: Epoch) -> int:
        """The last slot ``epoch`` governs (a huge number for the latest)."""
        return self._end(epoch)

    def _end(self, epoch: Epoch) -> int:
        later = [e.start for e in self.epochs if e.start > epoch.start]
        return min(later) - 1 if later else 1 << 62

    def everyone(self, since_slot: int) -> tuple[int, ...]:
        """Every node a member of some epoch governing slots from ``since_slot`` on."""
        ids: set[int] = set()
        for e in self.epochs:
            if self._end(e) >= since_slot:
                ids.update(e.ids)
        return tuple(sorted(ids))

    def check(self, change: Change) -> str | None:
        """Why ``change`` cannot apply to the latest membership, or ``None``."""
        latest = self.latest
        if change.kind not in KINDS:
            return f"unknown membership change {change.kind!r}"
        if change.node <= 0:
            return "node ids must be positive integers"
        if change.base >= 0 and change.base != latest.version:
            return "another membership change came first; retry"
        found = latest.member(change.node)
        if change.kind == "add":
            if found is not None:
                role = "voter" if found.voter else "learner"
                return f"node {change.node} is already a member ({role})"
            if change.address and any(m.address == change.address for m in latest.members):
                return f"address {change.address} is already a member's"
            return None
        if found is None:
            return f"node {change.node} is not a member"
        if change.kind == "promote":
            return None if not found.voter else f"node {change.node} is already a voter"
        if found.voter and len(latest.voters) == 1:
            return f"node {change.node} is the last voter: it cannot be removed"
        return None

    def apply(self, slot: int, change: Change) -> tuple[History, str | None]:
        """The history after ``change``, chosen in ``slot``; unchanged with the reason if
        it does not apply (every node reaches the same verdict, in log order)."""
        if slot <= self.version:
            return self, None  # already in (replayed, or carried by a snapshot)
        error = self.check(change)
        if error is not None:
            return self, error
        latest = self.latest
        members = [m for m in latest.members if m.id != change.node]
        if change.kind == "add":
            members.append(
                Member(change.node, change.address, False, slot, change.auto_promote, latest.voters)
            )
        elif change.kind == "promote":
            old = latest.member(change.node)
            assert old is not None
            members.append(Member(old.id, old.address, True, old.since, False, old.registrars))
        epoch = Epoch(slot + self.delay, slot, tuple(sorted(members, key=lambda m: m.id)))
        gone = tuple(sorted(g for g in self.gone if g != change.node))
        if change.kind == "remove":
            gone = tuple(sorted((*gone, change.node)))
        return History(self.delay, (*self.epochs, epoch), gone), None

    def trim(self, floor: int) -> History:
        """Forget epochs that govern no slot above ``floor`` (chosen and applied)."""
        keep = [e for e in self.epochs if self._end(e) > floor]
        if len(keep) == len(self.epochs):
            return self
        return History(self.delay, tuple(keep), self.gone)

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> History:
        return _HISTORY_DECODER.decode(data)


_ENCODER = msgspec.msgpack.Encoder()
_HISTORY_DECODER = msgspec.msgpack.Decoder(History)
_CHANGE_DECODER = msgspec.msgpack.Decoder(Change)


def newest(written: bytes | None, in_snapshot: bytes | None) -> bytes | None:
    """The newer of the history written with the log and the one a snapshot carries.

    A crash can leave either the newer (the snapshot is made durable on its own), and the
    node must restart from it: the older may lack a change the snapshot compacted away.
    """
    if not in_snapshot:
        return written
    if not written:
        return in_snapshot
    if History.decode(in_snapshot).version > History.decode(written).version:
        return in_snapshot
    return written


def change_value(change: Change) -> Value:
    """The slot value that carries ``change``."""
    return (MARK, _ENCODER.encode(change))


def as_change(value: Value) -> Change | None:
    """The change a chosen value carries, if it is one (a malformed one is ``None``)."""
    if len(value) != 2 or value[0] != MARK:
        return None
    try:
        return _CHANGE_DECODER.decode(value[1])
    except msgspec.MsgspecError:
        return None


def describe(epoch: Epoch) -> list[dict[str, object]]:
    """The members of ``epoch`` as plain rows (status pages, ``pyxos member list``)."""
    return [
        {"id": m.id, "address": m.address, "role": "voter" if m.voter else "learner"}
        for m in epoch.members
    ]


def ids_of(members: Iterable[Member]) -> tuple[int, ...]:
    return tuple(sorted(m.id for m in members))
