"""A simulated network: delay, reordering, loss, duplication and partitions.

Every decision draws from one seeded RNG, so the same seed delivers the same messages in
the same order. Partitions are a set of cut directed links, which covers symmetric
splits, isolated nodes and one-way (asymmetric) cuts alike.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from pyxos.core.messages import Message


@dataclass(slots=True)
class Faults:
    """Fault rates for one run; the swarm runner draws them per seed."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 0
    max_delay: int = 2
    long_delay: float = 0.0
    """Probability that a message takes up to ``long_delay_ticks`` instead."""
    long_delay_ticks: int = 20


@dataclass(slots=True)
class Network:
    rng: random.Random
    faults: Faults
    cut: set[tuple[int, int]] = field(default_factory=set)
    _queue: list[tuple[int, int, int, int, Message]] = field(default_factory=list)
    _seq: int = 0
    sent: int = 0
    dropped: int = 0

    def send(self, now: int, src: int, dst: int, message: Message) -> None:
        self.sent += 1
        f = self.faults
        rng = self.rng
        if f.drop and rng.random() < f.drop:
            self.dropped += 1
            return
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        for _ in range(copies):
            if f.long_delay and rng.random() < f.long_delay:
                delay = rng.randint(f.max_delay, f.long_delay_ticks)
            else:
                delay = rng.randint(f.min_delay, f.max_delay)
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, src, dst, message))

    def due(self, now: int) -> list[tuple[int, int, Message]]:
        """Messages whose time has come, minus those crossing a cut link."""
        out: list[tuple[int, int, Message]] = []
        q = self._queue
        while q and q[0][0] <= now:
            _, _, src, dst, message = heapq.heappop(q)
            if (src, dst) in self.cut:
                self.dropped += 1
                continue
            out.append((src, dst, message))
        return out

    def in_flight(self) -> int:
        return len(self._queue)

    def heal(self) -> None:
        self.cut.clear()

    def isolate(self, node: int, members: tuple[int, ...]) -> None:
        for other in members:
            if other != node:
                self.cut.add((node, other))
                self.cut.add((other, node))

    def split(self, side: set[int], members: tuple[int, ...]) -> None:
        for a in members:
            for b in members:
                if (a in side) != (b in side):
                    self.cut.add((a, b))
