"""Key-value clients with expiry: the ``kv-expiry`` workload of ``pyxos sim``.

Each node runs the real :class:`~pyxos.kv.statemachine.KVStateMachine` (:class:`~pyxos.sim.
app.KVApp`) and behaves as a Redis server does, through the same code
(:mod:`pyxos.kv.clock`): a write is stamped with the wall clock of the node it reaches
(:mod:`pyxos.sim.clocks`: offset, drifting and stepped per node), and stamped again when a
retry reaches another node; the leader proposes a clock tick every 100 ms while some key is
due by its clock; a linearizable read that meets a key due by the reading node's clock puts
a tick with that clock through the log first and answers after it is applied.

Clients send ``SET`` (plain, ``EX``, ``PX``, ``PXAT``, ``KEEPTTL``, ``NX``, ``XX``),
``EXPIRE``/``PEXPIRE`` (with ``NX``/``XX``/``GT``/``LT``), ``PERSIST``, ``DEL``, and read
with ``GET``, ``TTL``, ``PTTL`` and ``EXISTS``, on a few keys so they collide
(:mod:`pyxos.sim.kv_ops`); in half the seeds each client stays on one node, as a connected
client does. Writes use exactly-once sessions (client id, sequence number), as ``RID``
does; every ``SET`` writes a value of its own. What they see feeds
:class:`~pyxos.sim.expiry_oracle.ExpiryOracle`, and the checks of the default workload
still hold: reads see every write acknowledged before they began, and acknowledged writes
stay applied everywhere.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyxos.core.ballot import Ballot
from pyxos.core.replica import Role
from pyxos.kv.clock import clock_tick, leader_tick, read_needs_tick, write_stamp
from pyxos.kv.commands import COMMANDS
from pyxos.kv.request import encode_request
from pyxos.sim.app import KVApp
from pyxos.sim.clocks import MS_PER_TICK, WallClocks
from pyxos.sim.expiry_oracle import ALL_CHECKS, ExpiryOracle
from pyxos.sim.kv_ops import Op, draw_read, draw_write, expire_locally, parse_read
from pyxos.sim.sim_node import ClusterView, SimNode
from pyxos.sim.workload import Stats

EXPIRE_EVERY = 100 // MS_PER_TICK
"""Ticks between a leader's looks for due keys (the server's 100 ms)."""


@dataclass(slots=True)
class _Client:
    id: int
    op: Op | None = None
    target: int = 0
    submitted_at: int = 0
    first_submitted_at: int = 0
    read: list[bytes] | None = None
    read_token: int | None = None
    read_started: int = 0
    read_clock: int | None = None
    seq: int = 0
    home: int = 0
    """The node this client is connected to (0: a node drawn for each request)."""


class KVWorkload:
    """The clients of one simulated cluster running the key-value store; see the module
    docstring. The hooks are those of :class:`~pyxos.sim.workload.Workload`."""

    def __init__(
        self,
        cluster: ClusterView,
        rng: random.Random,
        clients: int,
        read_ratio: float,
        timeout: int,
        fail: Callable[[str], None],
        clocks: WallClocks,
        checks: frozenset[str] = ALL_CHECKS,
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.timeout = timeout
        self._fail = fail
        self.clocks = clocks
        self.oracle = ExpiryOracle(checks)
        self.clients = [_Client(c + 1) for c in range(clients)]
        self.stats = Stats()
        self.generate = True
        self.read_ratio = max(read_ratio, rng.choice((0.3, 0.5, 0.7)))
        self.keys = [b"k%d" % i for i in range(rng.choice((1, 2, 3, 4)))]
        self.ttl_scale = rng.choice((20, 200, 2000))
        """Typical TTLs in ms: a few ticks, a few elections, a few seconds."""
        self.clock_steps = rng.choice((0.0, 0.0, 0.002, 0.01))
        if rng.random() < 0.5:
            # Clients that stay connected to one node, as most do: writes then carry the
            # clocks of a few nodes only, and reads see those nodes' views of expiry.
            for c in self.clients:
                c.home = rng.choice(cluster.config.members)
        self.local_expiry = cluster.bug is not None and cluster.bug.local_expiry
        self.coverage = cluster.coverage
        self.submitted: set[bytes] = set()
        self.first_slot: dict[bytes, int] = {}
        self.ops: dict[bytes, Op] = {}
        """Write attempt (encoded request) -> its operation."""
        self.acked: list[Op] = []
        self._ack_ticks: list[int] = []
        self._ack_max_slot: list[int] = []
        self._next_token = 0
        self._read_clients: dict[int, int] = {}
        self._top = 0
        self._tick_ballot: Ballot | None = None
        """The ballot of the leader that proposed the latest expiry tick."""

    # ------------------------------------------------------------------ hooks

    def on_apply(
        self, node: SimNode, slot: int, value: tuple[bytes, ...], replies: Sequence[bytes]
    ) -> None:
        app = node.app
        assert isinstance(app, KVApp)
        self.oracle.state(node.id, slot, app.digest())
        if slot > self._top:
            self._top = slot
            self.coverage["stamp_below_clock"] += app.stamps_behind
            self.coverage["keys_expired"] += app.keys_expired
        # Record every write of the slot before anything is answered from the state after it.
        for cmd in value:
            if cmd not in self.submitted:
                self._fail(f"slot {slot} chose {cmd!r}, which no client proposed")
            if cmd not in self.first_slot:
                self.first_slot[cmd] = slot
                op = self.ops.get(cmd)
                if op is not None and not op.first_slot:
                    self._first_application(op, slot)
        for cmd, reply in zip(value, replies, strict=True):
            client = node.waiting.pop(cmd, None)
            if client is not None:
                self._ack(client, self.ops[cmd], reply)
            tokens = node.ticking.pop(cmd, None)
            if tokens:
                for token in tokens:
                    self._after_tick(node, token)
            if node.expiry_tick is not None and node.expiry_tick[0] == cmd:
                node.expiry_tick = None
        if self.oracle.violation is not None:
            self._fail(self.oracle.violation)

    def on_install(self, node: SimNode) -> None:
        app = node.app
        assert isinstance(app, KVApp)
        self.oracle.state(node.id, app.last, app.digest())
        if app.kv.next_expiry() is not None:
            self.coverage["kv_snapshot_with_ttls"] += 1
        if self.oracle.violation is not None:
            self._fail(self.oracle.violation)

    def on_read_ready(self, node: SimNode, token: int, index: int) -> None:
        client = self._read_clients.get(token)
        if client is not None:
            node.reads[token] = (index, client)

    def on_read_failed(self, token: int) -> None:
        client = self._read_clients.pop(token, None)
        if client is not None:
            self.clients[client - 1].read_token = None

    # ------------------------------------------------------------------ each tick

    def run(self) -> None:
        now = self.cluster.now
        if self.clock_steps and self.rng.random() < self.clock_steps:
            self.clocks.step(self.rng.choice(self.cluster.config.members))
            self.coverage["clock_step"] += 1
        self._expire_loops(now)
        for c in self.clients:
            if c.read_token is not None:
                if now - c.read_started > self.timeout:
                    self._read_clients.pop(c.read_token, None)
                    c.read_token = None
                continue
            if c.op is None:
                if not self.generate:
                    continue
                if self.rng.random() < self.read_ratio:
                    self._start_read(c)
                    continue
                c.seq += 1
                c.op = draw_write(
                    self.rng, c.id, c.seq, self.keys, self.ttl_scale, self.clocks.true_ms(now)
                )
                c.op.started = now
                c.first_submitted_at = now
                self._submit(c, c.home or self.rng.choice(self.cluster.config.members))
            elif now - c.submitted_at > self.timeout:
                # Unknown outcome: retry elsewhere; the node it reaches stamps it anew.
                self._submit(c, self._pick_target(c.target))

    def serve_reads(self) -> None:
        for node in self.cluster.nodes.values():
            if not node.reads:
                continue
            for token, (index, client) in list(node.reads.items()):
                if node.app.last < index:
                    continue
                del node.reads[token]
                c = self.clients[client - 1]
                if c.read_token == token and c.read_clock is None:
                    # (A read waiting on its clock tick is answered when the tick applies.)
                    self._serve(node, c, token)

    def pending(self) -> int:
        return sum(1 for c in self.clients if c.op is not None)

    def oldest_pending(self) -> int | None:
        return min((c.first_submitted_at for c in self.clients if c.op is not None), default=None)

    def check_final(self, top: int) -> None:
        """Every live node applied through ``top``, holding every acknowledged write."""
        for node in self.cluster.nodes.values():
            if not node.up:
                continue
            if node.app.last < top:
                self._fail(f"node {node.id} applied only {node.app.last} of {top} slots")
                return
            for op in self.acked:
                if not any(a in node.app.commands for a in op.attempts):
                    self._fail(f"acknowledged write {op.argv!r} missing on node {node.id}")
                    return
        if self.oracle.violation is not None:
            self._fail(self.oracle.violation)

    # ------------------------------------------------------------------ the leader

    def _expire_loops(self, now: int) -> None:
        """Each node's expiry loop (the server's ``_expire_loop``), every 100 ms."""
        for node in self.cluster.nodes.values():
            if not node.up or node.paused or (now + node.id) % EXPIRE_EVERY:
                continue
            if node.expiry_tick is not None:
                if now - node.expiry_tick[1] <= self.timeout:
                    continue  # one tick at a time, until it applies or times out
                node.expiry_tick = None
            replica = node.replica
            if replica.role is not Role.LEADER:
                continue
            app = node.app
            assert isinstance(app, KVApp)
            tick = leader_tick(app.kv, self.clocks.ms(node.id, now))
            if tick is not None and replica.propose(tick):
                self.submitted.add(tick)
                node.expiry_tick = (tick, now)
                self.coverage["expiry_tick_proposed"] += 1
                if replica.ballot != self._tick_ballot:
                    if self._tick_ballot is not None:
                        self.coverage["expiry_tick_new_leader"] += 1
                    self._tick_ballot = replica.ballot

    # ------------------------------------------------------------------ writes

    def _first_application(self, op: Op, slot: int) -> None:
        op.first_slot = slot
        self.stats.commit_latencies.append(self.cluster.now - op.started)
        self.oracle.wrote(op.key, op.value, slot, op.creates)

    def _pick_target(self, previous: int) -> int:
        nodes = self.cluster.nodes
        hint = nodes[previous].replica.leader if nodes[previous].up else None
        if hint is not None and nodes[hint].up:
            return hint
        return self.rng.choice(self.cluster.config.members)

    def _submit(self, c: _Client, target: int) -> None:
        op = c.op
        assert op is not None
        nodes = self.cluster.nodes
        if c.target:
            for attempt in op.attempts:
                nodes[c.target].waiting.pop(attempt, None)
        c.target = target
        c.submitted_at = now = self.cluster.now
        node = nodes[target]
        if not node.up or node.paused:
            return
        spec = COMMANDS[op.argv[0].lower()]
        stamp = write_stamp(op.argv, spec, lambda: self.clocks.ms(target, now))
        payload = encode_request(op.argv, c.id, op.seq, stamp)
        if payload not in self.ops:
            op.attempts.append(payload)
            self.ops[payload] = op
            self.submitted.add(payload)
        if node.replica.propose(payload):
            node.waiting[payload] = c.id

    def _ack(self, client_id: int, op: Op, reply: bytes) -> None:
        c = self.clients[client_id - 1]
        if c.op is not op:
            return
        if reply.startswith(b"-"):
            self._fail(f"{op.argv!r} (client {op.client}, seq {op.seq}) got {reply!r}")
        c.op = None
        now = self.cluster.now
        self.acked.append(op)
        prev = self._ack_max_slot[-1] if self._ack_max_slot else 0
        self._ack_ticks.append(now)
        self._ack_max_slot.append(max(prev, op.first_slot))
        self.stats.commands_acked += 1

    # ------------------------------------------------------------------ reads

    def _start_read(self, c: _Client) -> None:
        self._next_token += 1
        token = self._next_token
        c.read = draw_read(self.rng, self.keys)
        c.read_token = token
        c.read_started = self.cluster.now
        c.read_clock = None
        self._read_clients[token] = c.id
        node = self.cluster.nodes[c.home or self.rng.choice(self.cluster.config.members)]
        if node.up and not node.paused:
            node.replica.read_index(token)

    def _serve(self, node: SimNode, c: _Client, token: int) -> None:
        """The read index is applied here: answer as the server does (``Connection._read``)."""
        app = node.app
        assert isinstance(app, KVApp) and c.read is not None
        kv, argv = app.kv, c.read
        if not kv.expiring:
            self._answer(node, c, kv.read(argv), None)
            return
        clock = self.clocks.ms(node.id, self.cluster.now)
        if not read_needs_tick(kv, argv, 0, clock):
            self._answer(node, c, kv.read(argv, 2, 0, clock), clock)
            return
        self.coverage["read_at_edge"] += 1
        if self.local_expiry:
            expire_locally(kv, argv, clock)
            self._answer(node, c, kv.read(argv, 2, 0, clock), clock)
            return
        tick = clock_tick(clock)
        if not node.replica.propose(tick):
            self.on_read_failed(token)
            return
        self.submitted.add(tick)
        self.coverage["read_tick_proposed"] += 1
        node.ticking.setdefault(tick, []).append(token)
        c.read_clock = clock

    def _after_tick(self, node: SimNode, token: int) -> None:
        """The tick a read waited on is applied here (``Connection._tick_then_read``)."""
        client = self._read_clients.get(token)
        if client is None:
            return
        c = self.clients[client - 1]
        if c.read_token != token or c.read is None or c.read_clock is None:
            return
        app = node.app
        assert isinstance(app, KVApp)
        self._answer(node, c, app.kv.read(c.read, 2, 0, c.read_clock), c.read_clock)

    def _answer(self, node: SimNode, c: _Client, reply: bytes, clock: int | None) -> None:
        assert c.read is not None and c.read_token is not None
        # Linearizable read: it must see every write acknowledged before it began.
        i = bisect.bisect_left(self._ack_ticks, c.read_started)
        must_see = self._ack_max_slot[i - 1] if i > 0 else 0
        position = node.app.last
        if position < must_see:
            self._fail(
                f"stale read on node {node.id}: served at slot {position}, "
                f"but slot {must_see} was acknowledged before the read began"
            )
        name, key = c.read[0].decode().lower(), c.read[1]
        present, value = parse_read(name, reply)
        if present is None:
            self._fail(f"node {node.id}: {name.upper()} {key!r} answered {reply!r}")
        else:
            what = f"{name.upper()} {key.decode()} on node {node.id}"
            now = self.cluster.now
            oracle = self.oracle
            oracle.read(what, key, present, value, c.read_started, now, position)
            if present and clock is not None:
                app = node.app
                assert isinstance(app, KVApp)
                oracle.edge(node.id, what, key, app.kv.dbs[0].expires.get(key), clock)
                if name in ("ttl", "pttl") and reply != b":-1\r\n":
                    self.coverage["read_ttl_countdown"] += 1
            if oracle.violation is not None:
                self._fail(oracle.violation)
        self._read_clients.pop(c.read_token, None)
        c.read_token = None
        self.stats.reads_served += 1
