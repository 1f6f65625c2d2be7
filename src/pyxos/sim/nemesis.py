"""The faults of one seed's safety phase, drawn from its weather, tick by tick.

Simple faults fire at their own rate (crash, pause, partition, a late catch-up request).
Composite ones play a short script over later ticks, aimed where consensus protocols
break (as Jepsen's nemeses aim at the leader):

* *stale leader*: the leader is paused and made deaf but for one inbound link while the
  others elect (with five nodes or more, one follower may stay on its side, deaf to the
  others); meanwhile another node may crash (and lose its disk); just before the leader
  wakes, the peer that still reaches it gets a late catch-up request from it;
* *amnesia*: a minority is cut off and misses writes, then every other node crashes and
  one of them loses its disk; the minority and the node with the new disk are together a
  majority, and must not elect a leader that knows nothing of those writes.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyxos.core.replica import Role
from pyxos.sim.reconfig import Reconfigurer
from pyxos.sim.weather import Weather

if TYPE_CHECKING:
    from pyxos.sim.cluster import Cluster


@dataclass(slots=True)
class Nemesis:
    cluster: Cluster
    rng: random.Random
    weather: Weather
    faults: int = 0
    _restart_at: dict[int, int] = field(default_factory=dict)
    _heal_at: int | None = None
    _script: list[tuple[int, int, Callable[[], None]]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    reconfig: Reconfigurer = field(init=False)

    def __post_init__(self) -> None:
        self.reconfig = Reconfigurer(self.cluster, self.rng)

    def at(self, tick: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._script, (tick, next(self._seq), action))

    def tick(self) -> None:
        """Inject this tick's faults (before the cluster steps)."""
        c, rng, w = self.cluster, self.rng, self.weather
        now = c.now
        while self._script and self._script[0][0] <= now:
            heapq.heappop(self._script)[2]()
        for node, when in list(self._restart_at.items()):
            if now >= when:
                c.restart(node)
                del self._restart_at[node]
        for node in c.members:
            if not c.nodes[node].up and node not in self._restart_at:
                self._restart_at[node] = now + rng.randint(5, 100)  # it stopped by itself
        if w.crash and rng.random() < w.crash:
            self.crash(self.victim(), rng.randint(5, 100))
        if w.pause and rng.random() < w.pause:
            c.pause(self.victim(), rng.randint(5, 80))
            self.faults += 1
        if w.membership and rng.random() < w.membership:
            before = self.reconfig.operations
            self.reconfig.tick()
            self.faults += self.reconfig.operations - before
        if w.stray_requests and rng.random() < w.stray_requests and len(c.members) > 1:
            asker, peer = self._stray_pair()
            c.stray_catch_up(asker, peer, rng.randint(0, 20))
        if self._heal_at is not None and now >= self._heal_at:
            c.net.heal()
            self._heal_at = None
        if self._heal_at is None:
            if w.stale_leader and rng.random() < w.stale_leader:
                self._stale_leader()
            elif w.amnesia and rng.random() < w.amnesia:
                self._amnesia()
            elif w.partition and len(c.members) > 1 and rng.random() < w.partition:
                self._partition()
                self._heal_at = now + rng.randint(10, 150)
                self.faults += 1

    def victim(self) -> int:
        leader = self.cluster.leader()
        if leader is not None and self.rng.random() < 0.4:
            return leader
        return self.rng.choice(self.cluster.members)

    def crash(self, node: int, down_for: int, *, disk: bool = True) -> None:
        """Crash ``node`` (losing, rotting or tearing its disk at the weather's rate)."""
        c, rng = self.cluster, self.rng
        if disk and self.weather.disk_faults and rng.random() < self.weather.disk_faults:
            kind = rng.choice(("wipe", "rot", "tear"))
            c.crash(node, wipe=kind == "wipe", rot=kind == "rot", tear=kind == "tear")
        else:
            c.crash(node)
        self._restart_at[node] = c.now + down_for
        self.faults += 1

    # ------------------------------------------------------------------ composites

    def _stale_leader(self) -> None:
        c, rng = self.cluster, self.rng
        leader = c.leader()
        members = c.members
        if leader is None or len(members) < 3:
            return
        e = c.options.election_ticks
        sleep = rng.randint(3 * e, 8 * e)
        peer = rng.choice([m for m in members if m != leader])
        # Deaf, not mute: it hears only ``peer``, but what it says on waking gets out.
        c.net.cut.update((m, leader) for m in members if m not in (leader, peer))
        others = [m for m in members if m not in (leader, peer)]
        if len(members) >= 5 and rng.random() < 0.5:
            # A follower stays on its side: it hears the leader but not the others, so
            # it still takes the leader's word when it wakes.
            companion = rng.choice(others)
            others.remove(companion)
            c.net.cut.update((m, companion) for m in members if m not in (leader, companion))
            c.net.cut.discard((companion, leader))
        c.pause(leader, sleep)
        c.coverage["stale_leader_nemesis"] += 1
        now = c.now
        if others and rng.random() < 0.5:
            victim = rng.choice(others)
            self.at(now + sleep // 3, lambda: self.crash(victim, sleep // 3))
        self.at(now + sleep - 1, lambda: c.stray_catch_up(leader, peer, 0))
        self._heal_at = now + sleep + rng.randint(1, 2 * e)
        self.faults += 1

    def _amnesia(self) -> None:
        c, rng = self.cluster, self.rng
        members = list(c.members)
        f = (len(members) - 1) // 2
        if f < 1:
            return
        behind = rng.sample(members, f)
        rest = [m for m in members if m not in behind]
        for node in behind:
            c.net.isolate(node, tuple(members))
        c.coverage["amnesia_nemesis"] += 1
        e = c.options.election_ticks
        now = c.now
        writes = rng.randint(2 * e, 6 * e)
        forgetful = rng.choice(rest)

        def crash_the_rest() -> None:
            for node in rest:
                if node == forgetful:
                    c.crash(node, wipe=True)
                    self._restart_at[node] = c.now + 2
                else:
                    c.crash(node)
                    self._restart_at[node] = c.now + rng.randint(4 * e, 10 * e)
            c.net.heal()

        self.at(now + writes, crash_the_rest)
        self._heal_at = now + writes + 1
        self.faults += 1

    # ------------------------------------------------------------------ helpers

    def _stray_pair(self) -> tuple[int, int]:
        """Who asks whom for a late catch-up: half the time the weak spot, a leader that
        may be stale asking the node with the highest promise it still hears from."""
        c, rng = self.cluster, self.rng
        if rng.random() < 0.5:
            up = [n for n in c.nodes.values() if n.up]
            leaders = [n for n in up if n.replica.role is Role.LEADER]
            if leaders:
                asker = min(leaders, key=lambda n: n.replica.ballot).id
                heard = [n for n in up if n.id != asker and (n.id, asker) not in c.net.cut]
                if heard:
                    return asker, max(heard, key=lambda n: (n.replica.promised, n.id)).id
        a, b = rng.sample(c.members, 2)
        return a, b

    def _partition(self) -> None:
        c, rng = self.cluster, self.rng
        members = c.members
        kind = rng.choice(("isolate", "split", "oneway", "leader", "leader_one_in"))
        c.coverage["partition_" + kind] += 1
        if kind == "isolate":
            c.net.isolate(rng.choice(members), members)
        elif kind in ("leader", "leader_one_in"):
            leader = c.leader()
            victim = leader if leader is not None else rng.choice(members)
            c.net.isolate(victim, members)
            if kind == "leader_one_in":
                # It still hears one peer: it may go on believing it leads while the
                # others elect, and learn from that peer what they chose.
                c.net.cut.discard((rng.choice([m for m in members if m != victim]), victim))
        elif kind == "split":
            side = set(rng.sample(members, len(members) // 2))
            c.net.split(side, members)
        else:
            for _ in range(rng.randint(1, len(members))):
                a, b = rng.sample(members, 2)
                c.net.cut.add((a, b))
