"""Prometheus metrics for one node, in a registry of its own.

A registry per node (rather than the global default) lets tests and ``pyxos cluster`` run
several nodes in one process without their counters colliding. Counters and histograms are
updated where things happen; the gauges (commit and applied index, ballot, leadership,
peers) read the node's live state whenever the registry is collected, once
:meth:`NodeMetrics.follow` has tied them to a node.

The counters bumped once per command (proposals, client commands by kind, linearizable
reads) are :class:`Tally` objects instead of ``prometheus_client`` counters: a
``Counter.inc`` takes a lock and costs about half a microsecond, a tally is a plain integer
add (only the event loop thread writes them), and :class:`_TallyCollector` exports them as
ordinary counters when ``/metrics`` is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

Status = Callable[[], dict[str, Any]]
"""A node's ``status()``: what the gauges read at every collection."""

_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_BATCH_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Tally:
    """A counter for the per-command hot path: ``inc`` is an integer add, no lock.

    Only the event loop's thread may call :meth:`inc`; a scrape from another thread reads
    a value at most one increment old."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class NodeMetrics:
    """Counters, gauges and histograms exported on ``/metrics``."""

    def __init__(self, node_id: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.proposals = Tally()
        """Commands proposed by this node (``pyxos_proposals_total``)."""
        self.commands_applied = Counter(
            "pyxos_commands_applied", "Commands applied to the state machine", registry=r
        )
        self.slots_applied = Counter("pyxos_slots_applied", "Log slots applied", registry=r)
        self.reads = Tally()
        """Reads served after a read index (``pyxos_linearizable_reads_total``)."""
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
        self.ops_write, self.ops_read, self.ops_local = Tally(), Tally(), Tally()
        """Client commands received, by kind (``pyxos_client_ops_total{kind=...}``)."""
        r.register(_TallyCollector(self))
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


class _TallyCollector(Collector):
    """Exports a node's tallies as Prometheus counters, under the names they always had."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        proposals = CounterMetricFamily("pyxos_proposals", "Commands proposed by this node")
        proposals.add_metric([], m.proposals.value)
        yield proposals
        reads = CounterMetricFamily("pyxos_linearizable_reads", "Reads served after read index")
        reads.add_metric([], m.reads.value)
        yield reads
        ops = CounterMetricFamily("pyxos_client_ops", "Client commands received", labels=["kind"])
        for kind, tally in (("write", m.ops_write), ("read", m.ops_read), ("local", m.ops_local)):
            ops.add_metric([kind], tally.value)
        yield ops


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
