"""Membership changes in the simulator: nodes added, promoted, removed, replaced, and
leadership handed over, under whatever else the seed's weather does.

Each operation asks a node, as an operator's command would, and lets the cluster carry
it out: a change that is refused (another in progress, a learner that lags, no leader)
is simply dropped, as an operator would retry later. A node a chosen change adds is
started by the cluster (``Cluster.boot_added``) on a new data dir; a node that learns it
was removed stops for good. A node whose disk was wiped, and which is therefore a learner
for good, is removed and added back under the same id: the path by which such a machine
returns to the cluster.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pyxos.core.membership import Change
from pyxos.core.ready import Standing

if TYPE_CHECKING:
    from pyxos.sim.cluster import Cluster

MIN_VOTERS = 3
"""Removals never take the voters below this (the liveness phase needs a quorum)."""
MAX_MEMBERS = 7


class Reconfigurer:
    """Draws one membership operation at a time; see the module docstring."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.returning: list[int] = []
        """Removed so that they can come back under their id, with a new data dir."""
        self.token = 0
        self.operations = 0

    def tick(self) -> None:
        c, rng = self.cluster, self.rng
        leader = c.leader()
        if leader is None:
            return
        r = c.nodes[leader].replica
        latest = r.history.latest
        voters, learners = latest.voters, latest.learners
        self.token += 1
        wiped = [
            m
            for m in voters + learners
            if m in c.nodes and c.nodes[m].up and c.nodes[m].replica.standing is Standing.LEARNER
        ]
        op = rng.choice(("add", "add", "promote", "remove", "remove", "transfer", "return"))
        if op == "return" and wiped and len(voters) - (wiped[0] in voters) >= MIN_VOTERS - 1:
            # A wiped disk: remove the node, then add it back as a new member.
            c.shrink_hold = c.now + 400
            self._ask(leader, Change("remove", wiped[0], token=self.token))
            self.returning.append(wiped[0])
            c.coverage["member_op_return"] += 1
        elif op == "add" and len(latest.members) < MAX_MEMBERS:
            back = [n for n in self.returning if latest.member(n) is None]
            node = back[0] if back else max(c.nodes) + 1
            self._ask(
                leader, Change("add", node, auto_promote=rng.random() < 0.5, token=self.token)
            )
            c.coverage["member_op_add"] += 1
        elif op == "promote" and learners:
            self._ask(leader, Change("promote", rng.choice(learners), token=self.token))
            c.coverage["member_op_promote"] += 1
        elif op == "remove":
            if learners and rng.random() < 0.5:
                victim = rng.choice(learners)
            elif len(voters) > MIN_VOTERS:
                victim = rng.choice(voters)  # the leader too, now and then
            else:
                return
            self._ask(leader, Change("remove", victim, token=self.token))
            c.coverage["member_op_remove"] += 1
        elif op == "transfer" and len(voters) > 1:
            to = rng.choice([v for v in voters if v != leader])
            r.transfer_leadership(to, self.token)
            c.coverage["member_op_transfer"] += 1
        else:
            return
        self.operations += 1

    def _ask(self, leader: int, change: Change) -> None:
        """Ask the leader, or now and then another node (which forwards it)."""
        c, rng = self.cluster, self.rng
        if change.kind == "remove":
            voters = set(c.latest_membership().latest.voters)
            rest = voters - {change.node}
            if rest != voters:
                if not rest or len(c.lost_disks & rest) > 0:
                    return  # an operator shrinks only a healthy set of voters
                c.shrink_hold = c.now + 400
        up = [n for n in c.members if c.nodes[n].up and not c.nodes[n].paused]
        asked = rng.choice(up) if up and rng.random() < 0.3 else leader
        c.events.append((c.now, f"asked {asked}: {change}"))
        c.nodes[asked].replica.change_membership(change)
