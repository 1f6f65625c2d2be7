"""Simulated clients: commands submitted to any node, retried, and linearizable reads.

What the clients saw is the end-to-end half of the oracle: every acknowledged command
must stay applied everywhere, and a read must see every command acknowledged before it
began. Each client has one request open at a time; a write retried after a timeout
keeps its bytes (the application's request ids make a second application harmless).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyxos.core.membership import as_change
from pyxos.sim.sim_node import ClusterView, SimNode


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
    commands_acked: int = 0
    reads_served: int = 0
    commit_latencies: list[int] = field(default_factory=list)
    """Ticks from a command's first submission to its first application anywhere."""


class Workload:
    """The clients of one simulated cluster."""

    def __init__(
        self,
        cluster: ClusterView,
        rng: random.Random,
        clients: int,
        read_ratio: float,
        timeout: int,
        fail: Callable[[str], None],
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.read_ratio = read_ratio
        self.timeout = timeout
        self._fail = fail
        self.clients = [_Client(c + 1) for c in range(clients)]
        self.stats = Stats()
        self.generate = True
        """Whether clients start new commands (off while draining at the end)."""
        self.submitted: set[bytes] = set()
        self.first_slot: dict[bytes, int] = {}
        self.acked: dict[bytes, int] = {}
        self._ack_ticks: list[int] = []
        self._ack_max_slot: list[int] = []
        self._next_token = 0
        self._read_clients: dict[int, int] = {}
        self._latency_start: dict[bytes, int] = {}

    # ------------------------------------------------------------------ hooks

    def on_apply(
        self, node: SimNode, slot: int, value: tuple[bytes, ...], replies: Sequence[bytes]
    ) -> None:
        """``node`` applied ``slot``: record first applications, answer waiting clients."""
        now = self.cluster.now
        if as_change(value) is not None:
            return  # a membership change: the simulator's operator asked for it
        for cmd in value:
            if cmd not in self.submitted:
                self._fail(f"slot {slot} chose {cmd!r}, which no client proposed")
            if cmd not in self.first_slot:
                self.first_slot[cmd] = slot
                start = self._latency_start.pop(cmd, None)
                if start is not None:
                    self.stats.commit_latencies.append(now - start)
            client = node.waiting.pop(cmd, None)
            if client is not None:
                self._ack(client, cmd)

    def on_install(self, node: SimNode) -> None:
        """``node`` installed a snapshot (the oracle checked what it holds)."""

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
        for c in self.clients:
            if c.read_token is not None:
                if now - c.read_started > self.timeout:
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
                self._latency_start[c.command] = now
                c.first_submitted_at = now
                self._submit(c, self.rng.choice(self.cluster.members))
            elif now - c.submitted_at > self.timeout:
                # Unknown outcome: retry the same command elsewhere.
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

    def pending(self) -> int:
        return sum(1 for c in self.clients if c.command is not None)

    def oldest_pending(self) -> int | None:
        return min(
            (c.first_submitted_at for c in self.clients if c.command is not None), default=None
        )

    def check_final(self, top: int) -> None:
        """Every live node applied through ``top``, holding every acknowledged command."""
        for node in self.cluster.current_nodes():
            if not node.up:
                continue
            if node.app.last < top:
                self._fail(f"node {node.id} applied only {node.app.last} of {top} slots")
                return
            for cmd in self.acked:
                if cmd not in node.app.commands:
                    self._fail(f"acknowledged command {cmd!r} missing on node {node.id}")
                    return

    # ------------------------------------------------------------------ internals

    def _pick_target(self, previous: int) -> int:
        nodes = self.cluster.nodes
        hint = nodes[previous].replica.leader if nodes[previous].up else None
        if hint is not None and nodes[hint].up:
            return hint
        return self.rng.choice(self.cluster.members)

    def _submit(self, c: _Client, target: int) -> None:
        assert c.command is not None
        nodes = self.cluster.nodes
        old = nodes[c.target] if c.target else None
        if old is not None:
            old.waiting.pop(c.command, None)
        c.target = target
        c.submitted_at = self.cluster.now
        node = nodes[target]
        if not node.up or node.paused:
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
            self.acked[cmd] = self.cluster.now
            slot = self.first_slot[cmd]
            prev = self._ack_max_slot[-1] if self._ack_max_slot else 0
            self._ack_ticks.append(self.cluster.now)
            self._ack_max_slot.append(max(prev, slot))
            self.stats.commands_acked += 1

    def _start_read(self, c: _Client) -> None:
        self._next_token += 1
        token = self._next_token
        c.read_token = token
        c.read_started = self.cluster.now
        self._read_clients[token] = c.id
        node = self.cluster.nodes[self.rng.choice(self.cluster.members)]
        if node.up and not node.paused:
            node.replica.read_index(token)
