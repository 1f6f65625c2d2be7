"""Which nodes the simulated cluster runs as its membership changes.

The cores agree on the membership through the log; the simulator has to act on it the way
an operator and the runtime would: start a node that a chosen change added (on a new
data dir seeded with the cluster's membership, as ``pyxos serve --join`` does), stop one
that learned it was removed, and keep disk loss within what the smallest configuration
in force can survive. :class:`~pyxos.sim.cluster.Cluster` inherits these.
"""

from __future__ import annotations

import random
from collections import Counter

from pyxos.core.config import Config
from pyxos.core.membership import History
from pyxos.core.messages import MembershipInfo, MembershipQuery
from pyxos.sim.network import Network
from pyxos.sim.sim_node import SimNode
from pyxos.sim.storage import SimStorage

JOIN_RETRY_TICKS = 20
"""A node being added asks again after this many ticks without an answer."""


class ClusterMembers:
    """The membership side of the cluster; the state it reads is the cluster's."""

    nodes: dict[int, SimNode]
    config: Config
    """The founding configuration."""
    gone: dict[int, int]
    """Removed nodes -> the membership version that removed them."""
    lost_disks: set[int]
    joining: dict[int, int]
    """Nodes being added -> the tick they last asked a member for the membership."""
    net: Network
    shrink_hold: int
    """Until this tick a removal may be under way (disk loss counts the smaller size)."""
    events: list[tuple[int, str]]
    coverage: Counter[str]
    crash_rng: random.Random
    _node_seeds: dict[int, int]
    now: int

    def _new_storage(self) -> SimStorage:
        raise NotImplementedError

    def _boot(self, node: int, storage: SimStorage, restarts: int) -> SimNode:
        raise NotImplementedError

    def _record(self, event: str) -> None:
        raise NotImplementedError

    @property
    def members(self) -> tuple[int, ...]:
        """Every node the simulator runs (crashed or not), removed ones excepted."""
        return tuple(i for i in self.nodes if i not in self.gone)

    def current_nodes(self) -> list[SimNode]:
        """The nodes of the newest membership (a removed node that has not heard it was
        removed, and stopped, is not one)."""
        ids = self.latest_membership().latest.ids
        return [n for i, n in self.nodes.items() if i in ids and i not in self.gone]

    def latest_membership(self) -> History:
        """The newest membership any node knows (a crashed one's is still a true one)."""
        best = self.nodes[min(self.nodes)].replica.history
        for n in self.nodes.values():
            if n.replica.history.version > best.version:
                best = n.replica.history
        return best

    def boot_added(self) -> None:
        """Start every node a chosen change added that is not running yet, as ``pyxos
        serve --join`` does: it asks a member for the membership (a
        :class:`MembershipQuery` over the simulated network, again while unanswered) and
        starts on a new data dir holding the answer (:meth:`joined`)."""
        history = self.latest_membership()
        for m in history.latest.members:
            running = self.nodes.get(m.id)
            if running is not None and (m.id not in self.gone or self.gone[m.id] >= m.since):
                continue
            asked = self.joining.get(m.id)
            if asked is not None and self.now - asked < JOIN_RETRY_TICKS:
                continue
            members = [n.id for n in self.current_nodes() if n.up and n.id != m.id]
            if not members:
                continue
            self.joining[m.id] = self.now
            self.net.send(self.now, m.id, self.crash_rng.choice(members), MembershipQuery(m.id))

    def joined(self, node: int, answer: MembershipInfo) -> None:
        """A member answered the query of ``node`` (being added): start it."""
        if node not in self.joining:
            return  # answered already (a duplicate, or a second member's answer)
        history = History.decode(answer.membership)
        if history.latest.member(node) is None:
            return
        del self.joining[node]
        if node in self.nodes:
            self.lost_disks.discard(node)
            self.coverage["member_returned"] += 1
        self.gone.pop(node, None)
        self._node_seeds.setdefault(node, self.crash_rng.getrandbits(64))
        storage = self._new_storage()
        storage.durable.membership = history.encode()
        self.nodes[node] = self._boot(node, storage, 0)
        self.coverage["member_booted"] += 1
        self._record(f"boot {node}")

    def _stop_removed(self, node: SimNode) -> None:
        """A node that learned it was removed stops, as the runtime stops it."""
        self.coverage["member_stopped"] += 1
        self.coverage.update(node.replica.coverage)
        node.up = False
        self.gone[node.id] = node.replica.history.version
        self.lost_disks.discard(node.id)
        self._record(f"removed {node.id}")
        self.events.append((self.now, f"stopped {node.id}: {node.replica.removed}"))

    def may_lose_disk(self, node: int) -> bool:
        """Disk loss is bounded to a minority of the voters (each such node stays a learner
        until it is removed and added back)."""
        if node in self.lost_disks:
            return True
        voters = set(self.config.members)
        size = len(self.config.members)
        for n in self.nodes.values():
            # Any configuration still in force somewhere, the smallest counting.
            for epoch in n.replica.history.epochs:
                voters.update(epoch.voters)
                if n.id not in self.gone:
                    size = min(size, len(epoch.voters))
        size = min(size, len(self.latest_membership().latest.voters))
        if self.now < self.shrink_hold:
            size -= 1  # a removal may be under way: count the smaller configuration
        if len(self.lost_disks & voters) >= (size - 1) // 2:
            return False
        return self._quorums_survive(self.lost_disks | {node})

    def _quorums_survive(self, lost: set[int]) -> bool:
        """Whether every configuration some running node may still need keeps a quorum
        of voters with their disks, ``lost`` and the removed (stopped) nodes missing.

        A removed node stops once a voter of the new configuration knows the change; if
        that voter's disk went next, the others, which had not learned the change, would
        need the removed node for the slots before it: two faults, beyond what the
        cluster is built to survive, so the simulator does not inflict both.
        """
        out = lost | set(self.gone)
        hold = 1 if self.now < self.shrink_hold else 0
        epochs = [self.latest_membership().latest]
        for n in self.nodes.values():
            if n.id not in self.gone:
                epochs.extend(n.replica.history.epochs)
        for epoch in epochs:
            config = epoch.config()
            intact = sum(1 for v in epoch.voters if v not in out)
            if intact - hold < max(config.q1, config.q2):
                return False
            # A promotion may already be on its way (checked when it was proposed, chosen
            # after): count the learners as the voters they may become.
            everyone = epoch.ids
            intact = sum(1 for v in everyone if v not in out)
            if intact - hold < len(everyone) // 2 + 1:
                return False
        return True
