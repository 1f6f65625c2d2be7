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
from pyxos.sim.sim_node import SimNode
from pyxos.sim.storage import SimStorage


class ClusterMembers:
    """The membership side of the cluster; the state it reads is the cluster's."""

    nodes: dict[int, SimNode]
    config: Config
    """The founding configuration."""
    gone: dict[int, int]
    """Removed nodes -> the membership version that removed them."""
    lost_disks: set[int]
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
        """Start every node a chosen change added that is not running yet, on a new data
        dir holding the membership it learned from the cluster (``pyxos serve --join``)."""
        history = self.latest_membership()
        for m in history.latest.members:
            running = self.nodes.get(m.id)
            if running is not None and (m.id not in self.gone or self.gone[m.id] >= m.since):
                continue
            if m.id in self.nodes:
                self.lost_disks.discard(m.id)
                self.coverage["member_returned"] += 1
            self.gone.pop(m.id, None)
            self._node_seeds.setdefault(m.id, self.crash_rng.getrandbits(64))
            storage = self._new_storage()
            storage.durable.membership = history.encode()
            self.nodes[m.id] = self._boot(m.id, storage, 0)
            self.coverage["member_booted"] += 1
            self._record(f"boot {m.id}")

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
        return len(self.lost_disks & voters) < (size - 1) // 2
