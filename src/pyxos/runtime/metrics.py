"""Prometheus metrics for one node, in a registry of its own.

A registry per node (rather than the global default) lets tests and ``pyxos cluster`` run
several nodes in one process without their counters colliding.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_BATCH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class NodeMetrics:
    """Counters, gauges and histograms exported on ``/metrics``."""

    def __init__(self, node_id: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.proposals = Counter("pyxos_proposals", "Commands proposed by this node", registry=r)
        self.commands_applied = Counter(
            "pyxos_commands_applied", "Commands applied to the state machine", registry=r
        )
        self.slots_applied = Counter("pyxos_slots_applied", "Log slots applied", registry=r)
        self.reads = Counter(
            "pyxos_linearizable_reads", "Reads served after read index", registry=r
        )
        self.leader_changes = Counter(
            "pyxos_leader_changes", "Times this node saw the leader change", registry=r
        )
        self.elections_won = Counter(
            "pyxos_elections_won", "Times this node became leader", registry=r
        )
        self.snapshots = Counter("pyxos_snapshots", "Snapshots taken by this node", registry=r)
        self.fsync_seconds = Histogram(
            "pyxos_fsync_seconds",
            "Duration of one synced batch write",
            buckets=_FSYNC_BUCKETS,
            registry=r,
        )
        self.batch_entries = Histogram(
            "pyxos_batch_entries",
            "Log entries written per batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.client_ops = Counter(
            "pyxos_client_ops", "Client commands received", ["kind"], registry=r
        )
        self.client_errors = Counter(
            "pyxos_client_errors", "Client commands answered with an error", ["kind"], registry=r
        )
        self.commit_index = Gauge(
            "pyxos_commit_index", "Highest contiguous chosen slot", registry=r
        )
        self.applied_index = Gauge("pyxos_applied_index", "Last applied slot", registry=r)
        self.ballot_round = Gauge("pyxos_ballot_round", "Round of the promised ballot", registry=r)
        self.is_leader = Gauge("pyxos_is_leader", "1 when this node leads", registry=r)
        self.node_id = node_id

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
