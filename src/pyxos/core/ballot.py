"""Ballots: proposal numbers that no two nodes can ever share.

A ballot is ``(round, node)`` ordered lexicographically. Each node only ever issues
ballots carrying its own id, so two proposers can never pick the same number, and any node
can always pick a number higher than any it has seen by bumping the round.
"""

from __future__ import annotations

import msgspec


class Ballot(msgspec.Struct, frozen=True, order=True, array_like=True):
    """A proposal number, totally ordered by ``(round, node)``."""

    round: int
    node: int

    def successor(self, node: int) -> Ballot:
        """The smallest ballot of ``node`` that is higher than this one."""
        if node > self.node:
            return Ballot(self.round, node)
        return Ballot(self.round + 1, node)

    def __str__(self) -> str:
        # "round:node" rather than "round.node", which Redis clients would parse as a float.
        return f"{self.round}:{self.node}"


ZERO = Ballot(0, 0)
"""Lower than every ballot a node issues (node ids start at 1)."""
