"""A synchronous in-memory network for driving protocol cores by hand in tests.

Messages are delivered in FIFO order until nothing moves; links can be cut. Each node's
disk applies every ``Persist`` by the rules all stores share, so tests can restart a
node from it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import msgspec

from pyxos.core import Config, HardState, Message, Options, Replica, Role
from pyxos.core.messages import InstallSnapshot
from pyxos.core.ready import Ready, Standing
from pyxos.storage.batch import DurableImage

_Applied = list[tuple[int, tuple[bytes, ...]]]


def disk() -> DurableImage:
    """A node's disk, written by the rules every store shares; its node already votes."""
    return DurableImage(0, standing=(Standing.VOTER, None))


class Net:
    def __init__(self, n: int = 3, seed: int = 1, options: Options | None = None) -> None:
        self.config = Config.of(range(1, n + 1))
        self.options = options or Options(election_ticks=10, heartbeat_ticks=2)
        self.seed = seed
        self.nodes: dict[int, Replica] = {}
        self.disks: dict[int, DurableImage] = {}
        self.applied: dict[int, list[tuple[int, tuple[bytes, ...]]]] = {}
        self.reads: dict[int, list[tuple[int, int]]] = {}
        self.failed_reads: dict[int, list[int]] = {}
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.queue: list[tuple[int, int, Message]] = []
        self.log: list[tuple[int, int, Message]] = []
        self.drop_if: Callable[[int, int, Message], bool] = lambda src, dst, m: False
        self.snapshots: dict[int, tuple[int, bytes]] = {}
        self.snapshots_sent: list[tuple[int, int]] = []
        for i in self.config.members:
            self.disks[i] = disk()
            self.nodes[i] = self._make(i, None)
            self.applied[i] = []
            self.reads[i] = []
            self.failed_reads[i] = []

    def _make(self, i: int, state: HardState | None) -> Replica:
        return Replica(i, self.config, random.Random(self.seed * 100 + i), self.options, state)

    def isolate(self, node: int) -> None:
        for other in self.config.members:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, node: int) -> None:
        self.down.add(node)

    def restart(self, node: int) -> None:
        self.down.discard(node)
        self.nodes[node] = self._make(node, self.disks[node].recover())
        snap = self.snapshots.get(node)
        self.applied[node] = msgspec.msgpack.decode(snap[1], type=_Applied) if snap else []

    def process(self, i: int) -> None:
        while self.nodes[i].has_ready():
            self.process_one(i)

    def process_one(self, i: int) -> Ready:
        """Carry out one ``ready`` of node ``i`` (write, queue, apply, advance); return it."""
        r = self.nodes[i]
        ready = r.ready()
        for dst, m in ready.messages:
            self.queue.append((i, dst, m))
        self.disks[i].write(ready.persist)
        for dst, m in ready.persisted_messages:
            self.queue.append((i, dst, m))
        if ready.snapshot_install is not None:
            data = ready.snapshot_install.data
            self.applied[i] = msgspec.msgpack.decode(data, type=_Applied)
            self.snapshots[i] = (ready.snapshot_install.last_slot, data)
        self.applied[i].extend(ready.committed)
        for peer in ready.snapshots_to_send:
            self.snapshots_sent.append((i, peer))
            last, data = self.snapshots[i]
            self.queue.append((i, peer, InstallSnapshot(i, last, self.config.members, data)))
        self.reads[i].extend(ready.reads)
        self.failed_reads[i].extend(ready.failed_reads)
        r.advance(ready)
        return ready

    def settle(self, limit: int = 100_000) -> None:
        """Deliver messages until nothing is left to do."""
        for i in self.nodes:
            if i not in self.down:
                self.process(i)
        steps = 0
        while self.queue:
            steps += 1
            assert steps < limit, "the network did not settle"
            src, dst, m = self.queue.pop(0)
            if dst in self.down or (src, dst) in self.cut or self.drop_if(src, dst, m):
                continue
            self.log.append((src, dst, m))
            self.nodes[dst].step(m)
            self.process(dst)
            self.process(src) if src not in self.down else None

    def compact(self, i: int) -> None:
        """Take a snapshot of node ``i``'s applied commands and compact its log."""
        r = self.nodes[i]
        data = msgspec.msgpack.encode(self.applied[i])
        self.snapshots[i] = (r.applied, data)
        self.disks[i].install(InstallSnapshot(i, r.applied, self.config.members, data, r.promised))
        r.compact(r.applied)
        self.process(i)

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            for i, r in self.nodes.items():
                if i not in self.down:
                    r.tick()
            self.settle()

    def elect(self, node: int) -> None:
        """Make ``node`` lead; a second try uses the higher ballot a rejection taught it."""
        for _ in range(3):
            self.nodes[node].campaign()
            self.settle()
            if self.nodes[node].role is Role.LEADER:
                return
        raise AssertionError(f"node {node} could not be elected")

    def leaders(self) -> list[int]:
        return [i for i, r in self.nodes.items() if r.role is Role.LEADER and i not in self.down]

    def commands(self, node: int) -> list[bytes]:
        return [c for _, v in self.applied[node] for c in v]
