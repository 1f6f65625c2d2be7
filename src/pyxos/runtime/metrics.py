"""Prometheus metrics for one node, in a registry of its own.

A registry per node (rather than the global default) lets tests and ``pyxos cluster`` run
several nodes in one process without their counters colliding. Counters and histograms are
updated where things happen; the gauges (commit and applied index, ballot, leadership,
peers) read the node's live state whenever the registry is collected, once
:meth:`NodeMetrics.follow` has tied them to a node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

Status = Callable[[], dict[str, Any]]
"""A node's ``status()``: what the gauges read at every collection."""

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
        # Labelled children looked up once: labels() costs microseconds per command.
        self.ops_write = self.client_ops.labels("write")
        self.ops_read = self.client_ops.labels("read")
        self.ops_local = self.client_ops.labels("local")
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
        self._following = False

    def follow(self, status: Status) -> None:
        """Make the gauges read a node's live ``status()`` at every collection (once)."""
        if self._following:
            return
        self._following = True
        self.commit_index.set_function(lambda: status()["commit_index"])
        self.applied_index.set_function(lambda: status()["applied_index"])
        self.ballot_round.set_function(lambda: int(str(status()["ballot"]).split(":")[0]))
        self.is_leader.set_function(lambda: 1 if status()["role"] == "leader" else 0)
        self.registry.register(_PeerCollector(status))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _PeerCollector(Collector):
    """``pyxos_peer_connected`` and ``pyxos_peer_last_contact_seconds``, one series a peer."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def describe(self) -> list[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.status()["peers"])

    @staticmethod
    def _families(peers: dict[str, dict[str, object]]) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "pyxos_peer_connected", "1 while the link to the peer is up", labels=["peer"]
        )
        contact = GaugeMetricFamily(
            "pyxos_peer_last_contact_seconds",
            "Seconds since the last message from the peer (absent before the first)",
            labels=["peer"],
        )
        for peer, row in sorted(peers.items()):
            connected.add_metric([peer], 1.0 if row["connected"] else 0.0)
            last = row["last_contact_seconds"]
            if isinstance(last, int | float):
                contact.add_metric([peer], float(last))
        yield connected
        yield contact
