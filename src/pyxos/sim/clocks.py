"""Simulated wall clocks: one per node, offset, drifting and stepped, all by the seed.

Only the key-value workload reads them: a node stamps the writes it takes and decides
whether a read must put a clock tick through the log by its own wall clock, exactly as a
server does with ``time.time()``. Wall time runs on while a node is paused or down (its
timers do not), one simulator tick being :data:`MS_PER_TICK` ms of true time, as the
runtime's default tick. A node's clock is ``EPOCH + offset + true elapsed * drift``; the
drift is the node's tick rate (its timers and its clock share one oscillator) and the
offset is drawn from a few magnitudes, from in sync to seconds apart. A step (what NTP
does to a clock far off) moves one node's offset, backwards too, during the run.
"""

from __future__ import annotations

import random

__all__ = ["EPOCH", "MS_PER_TICK", "WallClocks"]

EPOCH = 1_700_000_000_000
"""True time at tick 0, in ms since the Unix epoch."""
MS_PER_TICK = 10
"""True milliseconds per simulator tick (the runtime ticks every 10 ms)."""

_OFFSETS = (0, 3, 40, 400, 1000, 2500)
"""Magnitudes of a node's clock offset, in ms."""


class WallClocks:
    """Every node's wall clock; see the module docstring."""

    def __init__(self, rng: random.Random, members: tuple[int, ...], rates: dict[int, float]):
        self.rng = rng
        self.offsets = {n: rng.choice(_OFFSETS) * rng.choice((-1, 1)) for n in members}
        self.rates = {n: rates.get(n, 1.0) for n in members}
        self.steps = 0

    def skewed(self) -> bool:
        """Whether any two clocks disagree."""
        return len(set(self.offsets.values())) > 1 or len(set(self.rates.values())) > 1

    @staticmethod
    def true_ms(tick: int) -> int:
        """True time at ``tick`` (what a client's well-synchronised clock reads)."""
        return EPOCH + tick * MS_PER_TICK

    def ms(self, node: int, tick: int) -> int:
        """Node ``node``'s wall clock at ``tick``, in ms since the Unix epoch."""
        return EPOCH + self.offsets[node] + int(tick * MS_PER_TICK * self.rates[node])

    def step(self, node: int) -> int:
        """Step ``node``'s clock by up to a second either way; the step in ms."""
        delta = self.rng.randint(-1000, 1000)
        self.offsets[node] += delta
        self.steps += 1
        return delta
