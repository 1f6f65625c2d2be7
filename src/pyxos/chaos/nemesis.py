"""A seeded schedule of faults against real processes and their links.

Kinds (``--nemesis``):

- ``kill``: SIGKILL one node, the leader or a majority, then restart them;
- ``crash``: SIGKILL every node at once, like a power cut, then restart them;
- ``pause``: SIGSTOP a node or the leader, then SIGCONT;
- ``partition``: isolate a node, isolate the leader, split majority/minority, or cut one
  link one way;
- ``delay``: slow every link, or one node's links;
- ``loss``: drop 10-50% of the packets on one node's links, or 10-20% on every link,
  below TCP with nftables (root only: see :mod:`pyxos.chaos.netfilter`);
- ``power``: cut the power of a node, of the leader or of every node: SIGKILL, then every
  write it did not fsync is lost (half the time tearing each file's last unsynced write),
  then the node boots from what its disk kept (root and FUSE: see
  :mod:`pyxos.chaos.power`; each node's data dir is then a lazy mount);
- ``member``: change the membership with ``PAXOS`` commands: remove a node (sometimes the
  leader) and add it back wiped at a new peer port, replace a node by a wiped one, or
  transfer leadership (see :mod:`pyxos.chaos.member`); healing waits until the node
  votes again, so the cluster keeps its size.

Each fault holds for a few seconds, then heals.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from pyxos.chaos import netfilter, power
from pyxos.chaos.member import MemberFaults
from pyxos.chaos.netfilter import PacketLoss
from pyxos.chaos.power import PowerSupply
from pyxos.chaos.proxy import LinkProxies
from pyxos.launch.local_cluster import LocalCluster

KINDS = ("kill", "crash", "pause", "partition", "delay", "loss", "power", "member")
NEEDS_ROOT = ("loss", "power")


def unavailable(kind: str) -> str | None:
    """Why ``kind`` cannot be injected on this machine, or ``None`` when it can."""
    if kind == "loss":
        return netfilter.unavailable_reason()
    if kind == "power":
        return power.unavailable_reason()
    return None


def available_kinds() -> tuple[str, ...]:
    """Every kind this machine can inject: ``loss`` needs root and nftables, ``power``
    root and FUSE."""
    return tuple(k for k in KINDS if unavailable(k) is None)


@dataclass(slots=True)
class Fault:
    kind: str
    detail: str
    nodes: list[int]
    start: float
    end: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """What the fault did, where it is countable (a power cut: unsynced writes lost)."""

    def as_dict(self, t0: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detail": self.detail,
            "nodes": self.nodes,
            "start_s": round(self.start - t0, 3),
            "end_s": round(self.end - t0, 3),
        } | ({"counts": self.counts} if self.counts else {})


def current_leader(cluster: LocalCluster) -> int | None:
    for k in cluster.ids:
        if not cluster.running(k):
            continue
        try:
            info = redis.Redis(port=cluster.client_port(k), socket_timeout=0.5).info("paxos")
        except (redis.RedisError, OSError):
            continue
        lid = info.get("leader_id")
        if lid not in ("", None):
            return int(lid)
    return None


@dataclass(slots=True)
class Nemesis:
    cluster: LocalCluster
    proxies: LinkProxies
    kinds: tuple[str, ...]
    rng: random.Random
    healthy: tuple[float, float] = (1.0, 3.0)
    hold: tuple[float, float] = (1.5, 4.0)
    faults: list[Fault] = field(default_factory=list)
    loss: PacketLoss | None = None
    power: PowerSupply | None = None
    paused: set[int] = field(default_factory=set)
    killed: set[int] = field(default_factory=set)
    member: MemberFaults | None = None
    healed: str = ""
    """What the last heal of a membership fault did (appended to the fault's detail)."""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await _wait(stop, self.rng.uniform(*self.healthy)):
                break
            fault = await asyncio.to_thread(self._inject)
            self.faults.append(fault)
            await _wait(stop, self.rng.uniform(*self.hold))
            if fault.kind == "loss" and self.loss is not None:
                fault.detail += f" ({self.loss.dropped_packets()} dropped)"
            await asyncio.to_thread(self._heal)
            if fault.kind == "member" and self.member is not None:
                fault.detail += f" ({self.healed})" if self.healed else ""
                fault.counts |= self.member.counts
            fault.end = time.monotonic()

    def _victim(self, leader_first: bool) -> int:
        leader = current_leader(self.cluster) if leader_first else None
        return leader if leader is not None else self.rng.choice(self.cluster.ids)

    def _inject(self) -> Fault:
        kind = self.rng.choice(self.kinds)
        ids = self.cluster.ids
        now = time.monotonic()
        rng = self.rng
        if kind == "crash":
            for k in ids:
                self.cluster.kill(k)
                self.killed.add(k)
            return Fault(kind, "kill every node at once", list(ids), now)
        if kind == "kill":
            roll = rng.random()
            if roll < 0.2:
                victims, detail = rng.sample(ids, len(ids) // 2 + 1), "kill a majority"
            elif roll < 0.65:
                victims, detail = [self._victim(True)], "kill the leader"
            else:
                victims, detail = [rng.choice(ids)], "kill a node"
            for k in victims:
                self.cluster.kill(k)
                self.killed.add(k)
            return Fault(kind, detail, victims, now)
        if kind == "pause":
            leader_first = rng.random() < 0.5
            victim = self._victim(leader_first)
            self.cluster.signal(victim, signal.SIGSTOP)
            self.paused.add(victim)
            return Fault(
                kind, "pause the leader" if leader_first else "pause a node", [victim], now
            )
        if kind == "partition":
            shape = rng.choice(("isolate", "leader", "split", "oneway"))
            if shape in ("isolate", "leader"):
                victim = self._victim(shape == "leader")
                self._cut({victim}, set(ids) - {victim})
                return Fault(kind, f"isolate node {victim}", [victim], now)
            if shape == "split":
                minority = set(rng.sample(ids, (len(ids) - 1) // 2))
                self._cut(minority, set(ids) - minority)
                return Fault(kind, f"split {sorted(minority)} from the rest", sorted(minority), now)
            a, b = rng.sample(ids, 2)
            self.proxies.set(a, b, "drop")
            return Fault(kind, f"one-way cut {a}->{b}", [a, b], now)
        if kind == "loss":
            return self._lose_packets(now)
        if kind == "power":
            return self._cut_power(now)
        if kind == "member":
            if self.member is None:
                self.member = MemberFaults(self.cluster, self.proxies, self.rng)
            self.healed = ""
            sort, detail, nodes = self.member.inject(current_leader(self.cluster))
            return Fault(kind, f"{sort}: {detail}", nodes, now)
        delay = rng.choice((0.05, 0.1, 0.2))
        if rng.random() < 0.5:
            for a, b in self.proxies.links:
                self.proxies.set(a, b, "delay", delay)
            return Fault("delay", f"{delay * 1000:.0f} ms on every link", list(ids), now)
        victim = rng.choice(ids)
        for a, b in self.proxies.links:
            if victim in (a, b):
                self.proxies.set(a, b, "delay", delay)
        return Fault("delay", f"{delay * 1000:.0f} ms on node {victim}'s links", [victim], now)

    def _lose_packets(self, now: float) -> Fault:
        if self.loss is None:
            raise RuntimeError("the loss nemesis needs a PacketLoss (root and nftables)")
        rng, links = self.rng, self.proxies.links
        if rng.random() < 0.3:
            percent = rng.choice((10, 20))
            self.loss.set([link.port for link in links.values()], percent)
            return Fault("loss", f"{percent}% packet loss on every link", self.cluster.ids, now)
        victim = self._victim(rng.random() < 0.5)
        percent = rng.choice((10, 25, 50))
        self.loss.set([link.port for (a, b), link in links.items() if victim in (a, b)], percent)
        return Fault("loss", f"{percent}% packet loss on node {victim}'s links", [victim], now)

    def _cut_power(self, now: float) -> Fault:
        if self.power is None:
            raise RuntimeError("the power nemesis needs the nodes on lazy mounts (PowerSupply)")
        rng, ids = self.rng, self.cluster.ids
        roll = rng.random()
        if roll < 0.3:
            victims, detail = list(ids), "cut power to every node"
        elif roll < 0.65:
            victims, detail = [self._victim(True)], "cut power to the leader"
        else:
            victims, detail = [rng.choice(ids)], "cut power to a node"
        tear = rng.random() < 0.5
        for k in victims:
            self.cluster.kill(k)
            self.killed.add(k)
        counts = dict.fromkeys(("unsynced_writes", "unsynced_bytes", "unsynced_entries"), 0)
        counts["torn_writes"] = 0
        seeds = [rng.getrandbits(32) if tear else None for _ in victims]
        for report in self.power.cut(victims, seeds):
            for key in counts:
                counts[key] += len(report["torn"]) if key == "torn_writes" else report[key]
        lost, torn = counts["unsynced_writes"], counts["torn_writes"]
        detail += f" ({lost} unsynced writes lost, {torn} torn)"
        return Fault("power", detail, victims, now, counts=counts)

    def _cut(self, side: set[int], other: set[int]) -> None:
        for a in side:
            for b in other:
                self.proxies.set(a, b, "drop")
                self.proxies.set(b, a, "drop")

    def _heal(self) -> None:
        self.proxies.heal()
        if self.loss is not None:
            self.loss.clear()
        for k in list(self.paused):
            self.cluster.signal(k, signal.SIGCONT)
        self.paused.clear()
        for k in list(self.killed):
            self.cluster.start(k)
        self.killed.clear()
        if self.member is not None and self.member.pending is not None:
            self.healed = self.member.heal()

    def heal_all(self) -> None:
        self._heal()
        for k in self.cluster.ids:
            self.cluster.signal(k, signal.SIGCONT)
            if not self.cluster.running(k):
                self.cluster.start(k)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
