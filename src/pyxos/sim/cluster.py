"""A whole cluster of protocol cores in one thread, driven as the runtime drives them.

Each node runs the same :class:`~pyxos.core.driver.Driver` the asyncio runtime runs: the
simulator only plays the disk (a write completes ``sync_delay`` ticks after it starts,
or fails, or a crash lands in between), the network and the clock. Nodes can crash
(losing the write in flight, or tearing it), lose their disk or have a record rot (and
then rejoin under a new data dir, as the runtime does), pause (no ticks, messages queue
up), and tick at their own rate (clock skew).

Every message a node sends is shown to the :class:`~pyxos.sim.oracle.Oracle`, which
knows what is really chosen, through a :class:`~pyxos.sim.witness.Witness`; every value a
node applies is checked against it. A node's process is a
:class:`~pyxos.sim.sim_node.SimNode`.

A node's state machine records the applied slots (:class:`~pyxos.sim.app.LogApp`), or,
with the ``kv-expiry`` workload, is the real key-value store with a wall clock of its own
(:mod:`pyxos.sim.kv_workload`).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter

from pyxos.core.ballot import Ballot
from pyxos.core.bugs import NO_BUGS
from pyxos.core.config import Config
from pyxos.core.driver import Driver, Work, fresh_commits
from pyxos.core.membership import History
from pyxos.core.messages import (
    InstallSnapshot,
    MembershipInfo,
    Message,
    SnapshotRequest,
    Value,
)
from pyxos.core.ready import HardState
from pyxos.core.replica import InvariantViolation, Options, Replica, Role
from pyxos.faults import Bug
from pyxos.sim.app import KVApp, LogApp
from pyxos.sim.clocks import WallClocks
from pyxos.sim.cluster_members import ClusterMembers
from pyxos.sim.expiry_oracle import ALL_CHECKS
from pyxos.sim.kv_workload import KVWorkload
from pyxos.sim.network import Faults, Network
from pyxos.sim.oracle import Oracle
from pyxos.sim.sim_node import SimNode
from pyxos.sim.storage import SimStorage
from pyxos.sim.witness import Witness
from pyxos.sim.workload import Workload
from pyxos.storage.errors import CorruptStorageError


class Cluster(ClusterMembers):
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
        max_in_flight: int = 64,
        write_errors: float = 0.0,
        rates: dict[int, float] | None = None,
        bug: Bug | None = None,
        white_box: bool = True,
        client_timeout: int = 40,
        workload: str = "log",
        kv_checks: frozenset[str] = ALL_CHECKS,
    ) -> None:
        self.seed = seed
        root = random.Random(seed)
        self.rng = random.Random(root.getrandbits(64))
        self.net = Network(random.Random(root.getrandbits(64)), faults or Faults())
        self.crash_rng = random.Random(root.getrandbits(64))
        self.config = Config.of(range(1, n + 1))
        self.options = options or Options()
        self.bug = bug
        """A deliberately broken build (``pyxos.faults``), to test the oracle."""
        self.compact_every = compact_every
        self.sync_delay = sync_delay
        self.max_in_flight = max_in_flight
        self.write_errors = write_errors
        self._node_seeds = {i: root.getrandbits(64) for i in self.config.members}
        self.now = 0
        self.trace = hashlib.sha256()
        self.deliveries = 0
        self.violation: str | None = None
        self.violation_tick = -1
        self.oracle = Oracle(
            History.founding(self.config, self.options.change_delay), white_box=white_box
        )
        self.witness = Witness(self.oracle)
        """Shows the oracle what every node says and stores."""
        self.coverage: Counter[str] = Counter()
        """Paths the simulator itself took (faults); see :meth:`coverage_totals`."""
        self.lost_disks: set[int] = set()
        self.events: list[tuple[int, str]] = []
        """Membership events, for debugging a seed."""
        self.gone: dict[int, int] = {}
        self.joining: dict[int, int] = {}
        """Removed nodes, stopped for good: id -> the membership version that removed it."""
        self.founders = n
        self.shrink_hold = 0
        """Until this tick a removal may be under way (it bounds disk loss tighter)."""
        if workload not in ("log", "kv-expiry"):
            raise ValueError(f"unknown workload {workload!r}")
        self.kv = workload == "kv-expiry"
        """Whether nodes run the key-value store (``pyxos.sim.kv_workload``)."""
        rng = random.Random(root.getrandbits(64))
        args = (self, rng, clients, read_ratio, client_timeout, self._fail)
        self.workload: Workload | KVWorkload
        if self.kv:
            clocks = WallClocks(
                random.Random(rng.getrandbits(64)), self.config.members, rates or {}
            )
            self.clocks = clocks
            self.workload = KVWorkload(*args, clocks, kv_checks)
        else:
            self.workload = Workload(*args)
        self.nodes: dict[int, SimNode] = {}
        for i in self.config.members:
            storage = self._new_storage()
            self.nodes[i] = self._boot(i, storage, 0)
            self.nodes[i].rate = (rates or {}).get(i, 1.0)

    # ------------------------------------------------------------------ nodes

    def _new_storage(self) -> SimStorage:
        """A brand-new data dir under a fresh random incarnation."""
        bug = self.bug
        storage = SimStorage(
            self.crash_rng.getrandbits(62) + 1,
            forget_promises=bug is not None and bug.forget_promises,
            skip_fsync=bug is not None and bug.skip_fsync,
        )
        if bug is not None and bug.new_disks_vote:
            storage.vote_at_once()
        nodes = getattr(self, "nodes", None)
        if nodes:
            # Restarted on an empty disk as ``pyxos serve --join`` does: with the newest
            # membership a running member holds.
            history = self.latest_membership()
            if history.version > 0:
                storage.durable.membership = history.encode()
        return storage

    def _boot(self, node: int, storage: SimStorage, restarts: int) -> SimNode:
        """Start ``node``'s process on ``storage``; a damaged data dir is moved aside."""
        try:
            state, snapshot = storage.recover()
        except CorruptStorageError as exc:
            self.coverage["corrupt_found"] += 1
            self._record(f"node {node}: data dir moved aside: {exc}")
            storage = self._new_storage()
            state, snapshot = storage.recover()
        app = KVApp() if self.kv else LogApp()
        if snapshot is not None:
            app.restore(snapshot.data)
        replica = self._make_replica(node, state, restarts)
        sim = SimNode(
            node, replica, Driver(replica, max_in_flight=self.max_in_flight), storage, app
        )
        sim.restarts = restarts
        sim.now = self.now
        sim.checked_commit = replica.snapshot_slot
        if snapshot is not None:
            self.witness.snapshot(sim)
            self.workload.on_install(sim)
        return sim

    def _make_replica(self, node: int, state: HardState, restarts: int) -> Replica:
        rng = random.Random(self._node_seeds[node] + 7919 * restarts)
        bugs = self.bug.protocol if self.bug is not None else NO_BUGS
        return Replica(node, self.config, rng, self.options, state, bugs)

    def crash(
        self, node: int, *, wipe: bool = False, rot: bool = False, tear: bool = False
    ) -> None:
        """Kill ``node``; optionally lose its disk, rot one record, or tear the write."""
        n = self.nodes[node]
        if not n.up:
            return
        self.coverage["crash"] += 1
        self.coverage.update(n.replica.coverage)
        n.up = False
        n.paused_until = 0
        n.inbox.clear()
        n.write_done_at = None
        n.waiting.clear()
        n.reads.clear()
        n.ticking.clear()
        n.expiry_tick = None
        damage = (wipe or rot or tear) and self.may_lose_disk(node)
        n.storage.crash(self.crash_rng, tear=tear and damage)
        if damage:
            self.lost_disks.add(node)
            self.events.append((self.now, f"disk of {node} lost (wipe={wipe} rot={rot})"))
            if wipe:
                self.coverage["disk_wiped"] += 1
                n.storage = self._new_storage()
            elif rot:
                self.coverage["record_rotted"] += 1
                n.storage.rot(self.crash_rng)
            else:
                self.coverage["write_torn"] += 1
        self._record(f"crash {node} wipe={wipe} rot={rot} tear={tear}")

    def restart(self, node: int) -> None:
        n = self.nodes[node]
        if n.up or node in self.gone:
            return
        try:
            fresh = self._boot(node, n.storage, n.restarts + 1)
        except ValueError:
            # Its data dir (or the membership it was given) says it is no member: the
            # runtime refuses to start such a node, and so does the simulator.
            self.gone[node] = self.oracle.history.version
            self.coverage["member_stopped"] += 1
            self.events.append((self.now, f"not restarted {node}: no member"))
            return
        fresh.rate = n.rate
        self.nodes[node] = fresh
        self.coverage["restart"] += 1
        self._record(f"restart {node}")
        r = fresh.replica
        self.oracle.restarted(node, r.incarnation, r.promised, r.snapshot_slot, r.log)
        self._check_oracle()

    def pause(self, node: int, ticks: int) -> None:
        """Stop ``node``'s process (no ticks, no I/O) while the others go on."""
        n = self.nodes[node]
        if n.up and not n.paused:
            self.coverage["pause"] += 1
            n.paused_until = self.now + ticks
            self._record(f"pause {node} {ticks}")

    def stray_catch_up(self, node: int, peer: int, lag: int) -> None:
        """Deliver, late, a catch-up request ``node`` could have sent ``lag`` slots ago.

        The transport keeps queued messages for seconds across reconnects, and a paused
        process sends what it had queued when it resumes, so a request for slots the
        asker has long since learned can arrive at any time; the answer then reaches
        the asker in whatever role it holds by then.
        """
        n, p = self.nodes[node], self.nodes[peer]
        if n.up and p.up and not p.paused and node != peer:
            # It was sent long ago and waited in the peer's inbound queue: it arrives now,
            # whatever the links look like; the answer crosses the network as usual.
            self.coverage["stray_catch_up"] += 1
            since = max(0, n.replica.commit_index - lag)
            self._deliver(p, node, b"stray", SnapshotRequest(node, since))

    def leader(self) -> int | None:
        """The live leader with the highest ballot, if any."""
        best: tuple[Ballot, int] | None = None
        for n in self.nodes.values():
            r = n.replica
            if n.up and r.role is Role.LEADER and (best is None or r.ballot > best[0]):
                best = (r.ballot, n.id)
        return best[1] if best else None

    def coverage_totals(self) -> Counter[str]:
        """Every path counted in this run: network, simulator and every core."""
        total = Counter(self.coverage)
        total.update(self.net.coverage)
        for n in self.nodes.values():
            if n.up:
                total.update(n.replica.coverage)
        return total

    # ------------------------------------------------------------------ time

    def step(self) -> None:
        """One tick: deliver due messages, tick every node, drive its batches, run clients."""
        self.now += 1
        now = self.now
        running: list[SimNode] = []
        for node in self.nodes.values():
            node.now = now
            if node.up and now >= node.paused_until:
                running.append(node)
                if node.inbox:
                    held, node.inbox = node.inbox, []
                    for src, data, message in held:
                        self._deliver(node, src, data, message)
        for src, dst, data, message in self.net.due(now):
            if dst in self.joining and isinstance(message, MembershipInfo):
                self.joined(dst, message)
                continue
            to = self.nodes.get(dst)
            if to is None or not to.up:
                continue
            if now < to.paused_until:
                to.inbox.append((src, data, message))
                continue
            self._deliver(to, src, data, message)
        for node in running:
            if node.rate == 1.0:
                node.replica.tick()
                continue
            node.phase += node.rate
            ticks = int(node.phase)
            node.phase -= ticks
            for _ in range(ticks):
                node.replica.tick()
        for node in running:
            if node.up:
                try:
                    self._drive(node)
                except InvariantViolation as exc:
                    # The node caught itself breaking a rule and stopped: a bug.
                    self._fail(f"node {node.id} stopped on a broken invariant: {exc}")
                    node.up = False
                if node.up and node.replica.removed is not None:
                    self._stop_removed(node)
        self.boot_added()
        self.workload.run()
        self.workload.serve_reads()
        self._check_oracle()

    def _deliver(self, node: SimNode, src: int, data: bytes, message: Message) -> None:
        self.deliveries += 1
        self.trace.update(data)
        node.replica.step(message)

    def _drive(self, node: SimNode) -> None:
        """Complete the write in flight when due, then take batches while there are any."""
        driver = node.driver
        while node.up:
            if node.write_done_at is not None and self.now >= node.write_done_at:
                node.write_done_at = None
                if self.write_errors and self.crash_rng.random() < self.write_errors:
                    # The runtime stops a node whose disk fails: it must not go on.
                    self.coverage["write_error"] += 1
                    node.storage.fail_write()
                    self.crash(node.id)
                    return
                written = node.storage.in_flight
                node.storage.sync()
                if written is not None:
                    self.witness.disk(node, written)
                self._carry_out(node, driver.written())
                continue
            if driver.can_take():
                self._carry_out(node, driver.take())
                continue
            return

    def _carry_out(self, node: SimNode, work: Work) -> None:
        for dst, message in work.send:
            self.witness.sent(node, message)
            self.net.send(self.now, node.id, dst, message)
        for ballot, slot in work.self_accepts:
            self.witness.own_vote(node, ballot, slot)
        if work.write is not None:
            node.storage.write(work.write)
            node.write_done_at = self.now + self.sync_delay
        if work.install is not None and work.install.last_slot > node.app.last:
            node.app.restore(work.install.data)
            self.witness.snapshot(node)
            self.workload.on_install(node)
        for slot, value in fresh_commits(work.committed, node.app.last):
            self._apply(node, slot, value)
        for token, index in work.reads:
            self.workload.on_read_ready(node, token, index)
        for token in work.failed_reads:
            self.workload.on_read_failed(token)
        snap = node.storage.durable.snapshot
        for peer in work.snapshots_to_send:
            if snap is not None:
                membership = node.replica.history.encode()
                msg = InstallSnapshot(
                    node.id, snap.last_slot, snap.members, snap.data, snap.ballot, membership
                )
                self.net.send(self.now, node.id, peer, msg)
        last = node.app.last
        if self.compact_every and last - node.replica.snapshot_slot >= self.compact_every:
            self.coverage["compaction"] += 1
            snapshot = InstallSnapshot(
                node.id,
                last,
                self.config.members,
                node.app.snapshot(),
                node.replica.promised,
                node.replica.history.encode(),
            )
            node.storage.save_app_snapshot(snapshot)
            node.replica.compact(last)

    # ------------------------------------------------------------------ the oracle

    def _apply(self, node: SimNode, slot: int, value: Value) -> None:
        app = node.app
        if slot != app.last + 1:
            self._fail(f"node {node.id} applied slot {slot} after {app.last}")
            return
        self.oracle.applied(node.id, slot, value)
        replies = app.apply(slot, value)
        self.workload.on_apply(node, slot, value, replies)

    def _check_oracle(self) -> None:
        violation = self.witness.commit_indexes(self.nodes.values())
        if violation is not None:
            self._fail(violation)

    def _fail(self, what: str) -> None:
        if self.violation is None:
            self.violation = what
            self.violation_tick = self.now

    def _record(self, event: str) -> None:
        self.trace.update(f"{self.now}:{event}".encode())

    # ------------------------------------------------------------------ the end

    def top_chosen(self) -> int:
        return max(self.oracle.chosen, default=0)

    def check_final(self) -> None:
        self.workload.check_final(self.top_chosen())
