"""A whole cluster of protocol cores in one thread, with clients and safety checks.

The simulator is the core's driver, exactly as the asyncio runtime is: it takes each
``Ready``, sends the free messages, writes the batch to a :class:`SimStorage`, syncs it a
little later (so that a crash can land between the write and the sync), then sends the
messages that depend on the write, applies chosen slots and calls ``advance``.

After every tick it checks the invariants of DESIGN.md section 7 and records the first
violation with the tick it happened at.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.config import Config
from pyxos.core.messages import Accepted, InstallSnapshot, Message, Promise, Value, encode
from pyxos.core.ready import HardState, Ready
from pyxos.core.replica import Options, Replica, Role
from pyxos.sim.network import Faults, Network
from pyxos.sim.storage import SimStorage

ReplicaFactory = Callable[..., Replica]


class Violation(Exception):
    """A safety invariant failed."""


@dataclass(slots=True)
class _App:
    """The simulated state machine: the sequence of applied slots and their values."""

    applied: dict[int, Value] = field(default_factory=dict)
    last: int = 0
    commands: set[bytes] = field(default_factory=set)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode([self.last, sorted(self.applied.items())])

    def restore(self, data: bytes) -> None:
        last, items = msgspec.msgpack.decode(data, type=tuple[int, list[tuple[int, Value]]])
        self.applied = dict(items)
        self.last = last
        self.commands = {c for _, v in items for c in v}


@dataclass(slots=True)
class _Node:
    id: int
    replica: Replica
    storage: SimStorage
    app: _App
    up: bool = True
    pending: deque[tuple[Ready, int]] = field(default_factory=deque)
    """Batches written but not yet synced, with the tick their sync completes."""
    waiting: dict[bytes, int] = field(default_factory=dict)
    """Commands a client submitted here and is waiting on: command -> client id."""
    reads: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Confirmed reads waiting to be served: token -> (index, client)."""
    restarts: int = 0


@dataclass(slots=True)
class _Client:
    id: int
    command: bytes | None = None
    target: int = 0
    submitted_at: int = 0
    first_submitted_at: int = 0
    read_token: int | None = None
    read_started: int = 0
    seq: int = 0


@dataclass(slots=True)
class Stats:
    deliveries: int = 0
    commands_acked: int = 0
    reads_served: int = 0
    commit_latencies: list[int] = field(default_factory=list)
    """Ticks from a command's first submission to its first application anywhere."""


class Cluster:
    """See the module docstring. Everything random comes from ``seed``."""

    def __init__(
        self,
        seed: int,
        n: int,
        *,
        faults: Faults | None = None,
        options: Options | None = None,
        clients: int = 4,
        read_ratio: float = 0.2,
        compact_every: int = 0,
        sync_delay: int = 1,
        pipeline: int = 1,
        replica_factory: ReplicaFactory = Replica,
        forget_promises: bool = False,
        client_timeout: int = 40,
    ) -> None:
        self.seed = seed
        root = random.Random(seed)
        self.rng = random.Random(root.getrandbits(64))
        self.net = Network(random.Random(root.getrandbits(64)), faults or Faults())
        self.crash_rng = random.Random(root.getrandbits(64))
        self.config = Config.of(range(1, n + 1))
        self.options = options or Options()
        self.factory = replica_factory
        self.compact_every = compact_every
        self.sync_delay = sync_delay
        self.pipeline = pipeline
        self.read_ratio = read_ratio
        self.client_timeout = client_timeout
        self._node_seeds = {i: root.getrandbits(64) for i in self.config.members}
        self.nodes: dict[int, _Node] = {}
        for i in self.config.members:
            replica = self._make_replica(i, None)
            storage = SimStorage(forget_promises=forget_promises)
            self.nodes[i] = _Node(i, replica, storage, _App())
        self.clients = [_Client(c + 1) for c in range(clients)]
        self.now = 0
        self.stats = Stats()
        self.trace = hashlib.sha256()
        self.violation: str | None = None
        self.violation_tick = -1

        # Oracles.
        self.chosen: dict[int, Value] = {}
        self.submitted: set[bytes] = set()
        self.first_slot: dict[bytes, int] = {}
        self.acked: dict[bytes, int] = {}
        self._ack_ticks: list[int] = []
        self._ack_max_slot: list[int] = []
        self.max_promised_sent: dict[int, Ballot] = dict.fromkeys(self.config.members, ZERO)
        self.accepted_sent: dict[int, dict[int, Ballot]] = {i: {} for i in self.config.members}
        self._next_token = 0
        self._read_clients: dict[int, int] = {}
        self._latency_start: dict[bytes, int] = {}
        self.generate = True
        """Whether clients start new commands (off while draining at the end)."""

    # ------------------------------------------------------------------ nodes

    def _make_replica(self, node: int, state: HardState | None, restarts: int = 0) -> Replica:
        rng = random.Random(self._node_seeds[node] + 7919 * restarts)
        return self.factory(node, self.config, rng, self.options, state)

    def crash(self, node: int) -> None:
        n = self.nodes[node]
        if not n.up:
            return
        n.up = False
        n.pending.clear()
        n.storage.crash(self.crash_rng)
        n.waiting.clear()
        n.reads.clear()
        self._record(f"crash {node}")

    def restart(self, node: int) -> None:
        n = self.nodes[node]
        if n.up:
            return
        n.restarts += 1
        state, snapshot = n.storage.recover()
        n.app = _App()
        if snapshot is not None:
            n.app.restore(snapshot[1])
        n.replica = self._make_replica(node, state, n.restarts)
        n.up = True
        self._record(f"restart {node}")
        self._check_restart(n)

    def leader(self) -> int | None:
        """The live leader with the highest ballot, if any."""
        best: tuple[Ballot, int] | None = None
        for n in self.nodes.values():
            r = n.replica
            if n.up and r.role is Role.LEADER and (best is None or r.ballot > best[0]):
                best = (r.ballot, n.id)
        return best[1] if best else None

    # ------------------------------------------------------------------ time

    def step(self) -> None:
        """One tick: deliver due messages, tick every node, drive Ready, run clients."""
        self.now += 1
        now = self.now
        for _src, dst, message in self.net.due(now):
            node = self.nodes[dst]
            if not node.up:
                continue
            self.stats.deliveries += 1
            self.trace.update(encode(message))
            node.replica.step(message)
        for node in self.nodes.values():
            if node.up:
                node.replica.tick()
        for node in self.nodes.values():
            if node.up:
                self._drive(node)
        self._run_clients()
        self._serve_reads()
        self._check_progressive()

    def _drive(self, node: _Node) -> None:
        """Carry out Readys; up to ``pipeline`` batches may be syncing at once."""
        while node.pending and self.now >= node.pending[0][1]:
            self._synced(node)
        while len(node.pending) < self.pipeline and node.replica.has_ready():
            ready = node.replica.ready()
            for dst, message in ready.messages:
                self.net.send(self.now, node.id, dst, message)
            node.storage.write(ready.persist)
            if ready.snapshot_install is not None:
                node.app.restore(ready.snapshot_install.data)
                self._check_snapshot(node)
            for slot, value in ready.committed:
                self._apply(node, slot, value)
            for token, index in ready.reads:
                client = self._read_clients.get(token)
                if client is not None:
                    node.reads[token] = (index, client)
            for token in ready.failed_reads:
                self._fail_read(token)
            for peer in ready.snapshots_to_send:
                snap = node.storage.durable.snapshot
                if snap is not None:
                    msg = InstallSnapshot(node.id, snap[0], self.config.members, snap[1])
                    self.net.send(self.now, node.id, peer, msg)
            node.replica.advance(ready, persisted=False)
            node.pending.append((ready, self.now + self.sync_delay))
            if self.sync_delay == 0:
                self._synced(node)
            last = node.app.last
            if self.compact_every and last - node.replica.snapshot_slot >= self.compact_every:
                node.storage.save_app_snapshot(last, node.app.snapshot())
                node.replica.compact(last)

    def _synced(self, node: _Node) -> None:
        """The oldest batch in flight is durable: release what depended on it."""
        ready, _ = node.pending.popleft()
        if ready.persist.must_sync or node.storage.unsynced:
            node.storage.sync()
        for dst, message in ready.persisted_messages:
            self._note_promises(node.id, message)
            self.net.send(self.now, node.id, dst, message)
        node.replica.persisted(ready)

    # ------------------------------------------------------------------ learner checks

    def _apply(self, node: _Node, slot: int, value: Value) -> None:
        app = node.app
        if slot != app.last + 1:
            self._fail(f"node {node.id} applied slot {slot} after {app.last}")
            return
        known = self.chosen.get(slot)
        if known is None:
            self.chosen[slot] = value
            for cmd in value:
                if cmd not in self.submitted:
                    self._fail(f"slot {slot} chose {cmd!r}, which no client proposed")
                self.first_slot.setdefault(cmd, slot)
                if cmd not in self.acked and cmd in self._latency_start:
                    self.stats.commit_latencies.append(self.now - self._latency_start.pop(cmd))
        elif known != value:
            self._fail(f"slot {slot}: node {node.id} applied {value!r}, chosen was {known!r}")
            return
        app.applied[slot] = value
        app.last = slot
        app.commands.update(value)
        for cmd in value:
            client = node.waiting.pop(cmd, None)
            if client is not None:
                self._ack(client, cmd)

    def _check_snapshot(self, node: _Node) -> None:
        for slot, value in node.app.applied.items():
            known = self.chosen.get(slot)
            if known is not None and known != value:
                self._fail(f"node {node.id} installed a snapshot whose slot {slot} differs")

    def _note_promises(self, node: int, message: Message) -> None:
        """Record what an acceptor promised; it must never go back on it."""
        if isinstance(message, Promise | Accepted):
            # Accepting at b also promises b (Paxos), so both kinds raise the floor.
            floor = self.max_promised_sent[node]
            if message.ballot < floor:
                kind = type(message).__name__
                self._fail(f"node {node} sent {kind} at {message.ballot} after promising {floor}")
            else:
                self.max_promised_sent[node] = message.ballot
        if isinstance(message, Accepted):
            sent = self.accepted_sent[node]
            for slot in range(message.first_slot, message.last_slot + 1):
                if sent.get(slot, ZERO) < message.ballot:
                    sent[slot] = message.ballot

    def _check_restart(self, node: _Node) -> None:
        r = node.replica
        if r.promised < self.max_promised_sent[node.id]:
            self._fail(
                f"node {node.id} restarted with promise {r.promised} below the "
                f"{self.max_promised_sent[node.id]} it had promised"
            )
        for slot, ballot in self.accepted_sent[node.id].items():
            if slot <= r.snapshot_slot:
                continue
            entry = r.log.get(slot)
            if entry is None or (entry.ballot < ballot and not entry.chosen):
                self._fail(f"node {node.id} lost its acceptance of slot {slot} at {ballot}")
                return

    def _check_progressive(self) -> None:
        for node in self.nodes.values():
            if node.up and node.replica.promised < self.max_promised_sent[node.id]:
                self._fail(f"node {node.id} promise went back to {node.replica.promised}")

    def _fail(self, what: str) -> None:
        if self.violation is None:
            self.violation = what
            self.violation_tick = self.now

    def _record(self, event: str) -> None:
        self.trace.update(f"{self.now}:{event}".encode())

    # ------------------------------------------------------------------ clients

    def _run_clients(self) -> None:
        for c in self.clients:
            if c.read_token is not None:
                if self.now - c.read_started > self.client_timeout:
                    self._read_clients.pop(c.read_token, None)
                    c.read_token = None
                continue
            if c.command is None:
                if not self.generate:
                    continue
                if self.rng.random() < self.read_ratio:
                    self._start_read(c)
                    continue
                c.seq += 1
                c.command = f"c{c.id}-{c.seq}".encode()
                self.submitted.add(c.command)
                self._latency_start[c.command] = self.now
                c.first_submitted_at = self.now
                self._submit(c, self.rng.choice(self.config.members))
            elif self.now - c.submitted_at > self.client_timeout:
                # Unknown outcome: retry the same command (it may end up chosen twice,
                # which the application's request ids de-duplicate).
                self._submit(c, self._pick_target(c.target))

    def _pick_target(self, previous: int) -> int:
        hint = self.nodes[previous].replica.leader if self.nodes[previous].up else None
        if hint is not None and self.nodes[hint].up:
            return hint
        return self.rng.choice(self.config.members)

    def _submit(self, c: _Client, target: int) -> None:
        assert c.command is not None
        old = self.nodes[c.target] if c.target else None
        if old is not None:
            old.waiting.pop(c.command, None)
        c.target = target
        c.submitted_at = self.now
        node = self.nodes[target]
        if not node.up:
            return
        if node.app.commands and c.command in node.app.commands:
            self._ack(c.id, c.command)
            return
        if node.replica.propose(c.command):
            node.waiting[c.command] = c.id

    def _ack(self, client_id: int, cmd: bytes) -> None:
        c = self.clients[client_id - 1]
        if c.command != cmd:
            return
        c.command = None
        if cmd not in self.acked:
            self.acked[cmd] = self.now
            slot = self.first_slot[cmd]
            prev = self._ack_max_slot[-1] if self._ack_max_slot else 0
            self._ack_ticks.append(self.now)
            self._ack_max_slot.append(max(prev, slot))
            self.stats.commands_acked += 1

    def _start_read(self, c: _Client) -> None:
        self._next_token += 1
        token = self._next_token
        c.read_token = token
        c.read_started = self.now
        self._read_clients[token] = c.id
        target = self.rng.choice(self.config.members)
        node = self.nodes[target]
        if node.up:
            node.replica.read_index(token)

    def _fail_read(self, token: int) -> None:
        client = self._read_clients.pop(token, None)
        if client is not None:
            self.clients[client - 1].read_token = None

    def _serve_reads(self) -> None:
        for node in self.nodes.values():
            if not node.reads:
                continue
            for token, (index, client) in list(node.reads.items()):
                if node.app.last < index:
                    continue
                del node.reads[token]
                c = self.clients[client - 1]
                if c.read_token != token:
                    continue
                # Linearizable read: it must see every write acknowledged before it began.
                i = bisect.bisect_left(self._ack_ticks, c.read_started)
                must_see = self._ack_max_slot[i - 1] if i > 0 else 0
                if node.app.last < must_see:
                    self._fail(
                        f"stale read on node {node.id}: served at slot {node.app.last}, "
                        f"but slot {must_see} was acknowledged before the read began"
                    )
                self._read_clients.pop(token, None)
                c.read_token = None
                self.stats.reads_served += 1

    # ------------------------------------------------------------------ final checks

    def pending_commands(self) -> int:
        return sum(1 for c in self.clients if c.command is not None)

    def check_final(self) -> None:
        """Every live node applied the same prefix holding every acknowledged command."""
        top = max(self.chosen, default=0)
        for node in self.nodes.values():
            if not node.up:
                continue
            if node.app.last < top:
                self._fail(f"node {node.id} applied only {node.app.last} of {top} slots")
                return
            for cmd in self.acked:
                if cmd not in node.app.commands:
                    self._fail(f"acknowledged command {cmd!r} missing on node {node.id}")
                    return
