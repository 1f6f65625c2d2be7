"""One simulated node's process, and what the workloads may see of the cluster.

The workloads (:mod:`pyxos.sim.workload`, :mod:`pyxos.sim.kv_workload`) play clients:
they submit commands to nodes, wait for them to apply and serve reads. They need a node's
process state and a few facts about the cluster, not the cluster itself, so they are given
a :class:`ClusterView`; the cluster, which builds them, satisfies it, and neither module
needs to name the other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from pyxos.core.config import Config
from pyxos.core.driver import Driver
from pyxos.core.messages import Message
from pyxos.core.replica import Replica
from pyxos.faults import Bug
from pyxos.sim.app import LogApp
from pyxos.sim.storage import SimStorage


@dataclass(slots=True)
class SimNode:
    id: int
    replica: Replica
    driver: Driver
    storage: SimStorage
    app: LogApp
    up: bool = True
    paused_until: int = 0
    rate: float = 1.0
    """Ticks per simulated step: clock skew between nodes."""
    phase: float = 0.0
    inbox: list[tuple[int, bytes, Message]] = field(default_factory=list)
    """Messages that arrived while paused, delivered when the process resumes."""
    write_done_at: int | None = None
    waiting: dict[bytes, int] = field(default_factory=dict)
    """Commands a client submitted here and is waiting on: command -> client id."""
    reads: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Confirmed reads waiting to be served: token -> (index, client)."""
    ticking: dict[bytes, list[int]] = field(default_factory=dict)
    """Key-value workload: clock ticks this node proposed for reads -> their tokens."""
    expiry_tick: tuple[bytes, int] | None = None
    """Key-value workload: the leader's clock tick in flight, and when it was proposed."""
    restarts: int = 0
    checked_commit: int = 0
    """The oracle has checked this node's commit index up to here."""
    audited_commit: int = 0
    """The oracle has checked the records under this node's durable commit index up to
    here."""
    now: int = 0

    @property
    def paused(self) -> bool:
        return self.now < self.paused_until


class ClusterView(Protocol):
    """What a workload reads of the cluster it plays clients for."""

    @property
    def now(self) -> int:
        """The simulated tick."""
        ...

    @property
    def nodes(self) -> dict[int, SimNode]:
        """Every node's process, up or not."""
        ...

    @property
    def config(self) -> Config:
        """The cluster's members, which clients pick from."""
        ...

    @property
    def members(self) -> tuple[int, ...]:
        """Every node the simulator runs (crashed or not), removed ones excepted."""
        ...

    def current_nodes(self) -> list[SimNode]:
        """The nodes of the newest membership."""
        ...

    @property
    def bug(self) -> Bug | None:
        """The deliberately broken build under test, if any."""
        ...

    @property
    def coverage(self) -> Counter[str]:
        """The simulator's own path counters, which workloads add to."""
        ...
