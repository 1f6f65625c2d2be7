"""One seed's weather: the fault rates and knobs a swarm draws per seed (swarm testing).

Kept apart from the runner so that the nemesis, which reads it, and the runner, which
draws it, both sit above it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pyxos.core.replica import Options
from pyxos.sim.network import Faults


@dataclass(slots=True)
class Weather:
    """One seed's fault rates (swarm testing)."""

    crash: float
    disk_faults: float
    """Share of crashes that also lose the disk, rot a record or tear the write."""
    pause: float
    partition: float
    stray_requests: float
    """Rate of late catch-up requests (see ``Cluster.stray_catch_up``)."""
    stale_leader: float
    """Rate of the stale-leader nemesis (see ``pyxos.sim.nemesis``)."""
    amnesia: float
    """Rate of the amnesia nemesis (see ``pyxos.sim.nemesis``)."""
    write_errors: float
    membership: float
    """Rate of membership operations (``pyxos.sim.reconfig``)."""
    rates: dict[int, float]
    faults: Faults
    compact_every: int
    sync_delay: int
    max_in_flight: int
    clients: int
    read_ratio: float
    options: Options

    @classmethod
    def draw(cls, rng: random.Random, nodes: int, busy_batch: int) -> Weather:
        max_delay = rng.choice((1, 2, 3, 5))
        skewed = rng.random() < 0.3
        return cls(
            crash=rng.choice((0.0, 0.002, 0.01, 0.03)),
            disk_faults=rng.choice((0.0, 0.0, 0.1, 0.4)),
            pause=rng.choice((0.0, 0.0, 0.005, 0.02)),
            partition=rng.choice((0.0, 0.005, 0.02)),
            stray_requests=rng.choice((0.0, 0.01, 0.05)),
            stale_leader=rng.choice((0.0, 0.005, 0.01)),
            amnesia=rng.choice((0.0, 0.003, 0.006)),
            write_errors=rng.choice((0.0, 0.0, 0.0, 0.002)),
            membership=rng.choice((0.0, 0.0, 0.01, 0.03)),
            rates={
                n: rng.choice((0.5, 0.8, 1.0, 1.25, 2.0)) if skewed else 1.0
                for n in range(1, nodes + 1)
            },
            faults=Faults(
                drop=rng.choice((0.0, 0.01, 0.05, 0.2)),
                duplicate=rng.choice((0.0, 0.02, 0.1)),
                min_delay=rng.choice((0, 1)),
                max_delay=max_delay,
                long_delay=rng.choice((0.0, 0.01, 0.05)),
                long_delay_ticks=rng.choice((10, 30, 80)),
                hold_on_cut=rng.choice((0, 50, 200)),
            ),
            compact_every=rng.choice((0, 0, 8, 40)),
            sync_delay=rng.choice((0, 1, 1, 2, 4)),
            max_in_flight=rng.choice((1, 3, 64)),
            clients=rng.randint(2, 12),
            read_ratio=rng.choice((0.0, 0.1, 0.3)),
            options=Options(
                busy_batch=busy_batch,
                catchup_batch=rng.choice((2, 16, 256)),
                max_promise_entries=rng.choice((3, 64, 4096)),
                window=rng.choice((4, 256)),
                change_delay=rng.choice((1, 3, 8, 32)),
            ),
        )

    @classmethod
    def calm(cls, busy_batch: int) -> Weather:
        """Duels only: no faults but proposers starting phase 1 at the same tick."""
        return cls(
            crash=0.0,
            disk_faults=0.0,
            pause=0.0,
            partition=0.0,
            stray_requests=0.0,
            stale_leader=0.0,
            amnesia=0.0,
            write_errors=0.0,
            membership=0.0,
            rates={},
            faults=Faults(drop=0.0, max_delay=3),
            compact_every=0,
            sync_delay=1,
            max_in_flight=3,
            clients=4,
            read_ratio=0.1,
            options=Options(busy_batch=busy_batch),
        )
