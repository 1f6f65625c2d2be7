"""Cluster membership and quorums.

Quorums are computed here and nowhere else, so that phase-1 and phase-2 quorums of
different sizes (Flexible Paxos: ``q1 + q2 > n``) and, later, membership changes through
the log, change one object rather than every ``n // 2 + 1`` in the code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class ConfigError(ValueError):
    """A cluster configuration that cannot be safe."""


@dataclass(frozen=True, slots=True)
class Config:
    """The voting members, the quorum sizes for both phases, and the non-voting learners."""

    members: tuple[int, ...]
    q1: int = 0
    q2: int = 0
    learners: tuple[int, ...] = ()
    """Nodes that receive the log and serve reads but count in no quorum."""

    def __post_init__(self) -> None:
        n = len(self.members)
        if n == 0:
            raise ConfigError("a cluster needs at least one member")
        if len(set(self.members)) != n:
            raise ConfigError(f"duplicate member ids in {self.members}")
        if any(m <= 0 for m in self.members):
            raise ConfigError("member ids must be positive integers")
        majority = n // 2 + 1
        q1 = self.q1 or majority
        q2 = self.q2 or majority
        if not (1 <= q1 <= n and 1 <= q2 <= n):
            raise ConfigError(f"quorum sizes must be between 1 and {n}")
        if q1 + q2 <= n:
            raise ConfigError(f"q1 + q2 must exceed {n} so that quorums intersect")
        if set(self.learners) & set(self.members) or len(set(self.learners)) != len(self.learners):
            raise ConfigError("a learner must not also be a voter, nor be listed twice")
        # Frozen dataclass: store the resolved sizes through object.__setattr__.
        object.__setattr__(self, "members", tuple(sorted(self.members)))
        object.__setattr__(self, "q1", q1)
        object.__setattr__(self, "q2", q2)
        object.__setattr__(self, "learners", tuple(sorted(self.learners)))

    @classmethod
    def of(cls, members: Iterable[int]) -> Config:
        """Majority quorums over ``members``."""
        return cls(tuple(members))

    def is_phase1_quorum(self, voters: Iterable[int]) -> bool:
        """Whether promises from ``voters`` let a proposer lead."""
        return sum(1 for v in set(voters) if v in self.members) >= self.q1

    def is_phase2_quorum(self, voters: Iterable[int]) -> bool:
        """Whether acceptances from ``voters`` make a value chosen."""
        return sum(1 for v in set(voters) if v in self.members) >= self.q2

    def registration_quorum(self) -> int:
        """How many peers must register a new data dir before it may vote.

        More than half of the *other* members, so that any two such sets share a peer:
        whichever majority a node with a wiped disk reaches, one of them still holds the
        registration of the data dir it lost, and refuses the new one. A lone node has no
        peer to ask and votes at once (it is the whole cluster).
        """
        peers = len(self.members) - 1
        return peers // 2 + 1 if peers else 0

    def members_majority(self) -> int:
        """The majority of the voters (the quorum size unless set otherwise)."""
        return len(self.members) // 2 + 1

    def peers_of(self, node: int) -> tuple[int, ...]:
        """Every voter and learner except ``node``."""
        return tuple(sorted(m for m in (*self.members, *self.learners) if m != node))
