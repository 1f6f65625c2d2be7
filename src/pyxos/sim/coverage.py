"""What a swarm must reach: every message kind, every notable path of the core, every fault.

A simulator that never sends a message kind, or never takes a path, says nothing about
it: an oracle that stays silent there proves nothing. ``pyxos sim --coverage`` prints the
counts, and a test fails the build if any of these stays at zero over a CI swarm.
"""

from __future__ import annotations

import typing

from pyxos.core.messages import Message, SnapshotChunk, SnapshotChunkAck
from pyxos.core.replica import COVERAGE_POINTS

RUNTIME_ONLY = (SnapshotChunk, SnapshotChunkAck)
"""Kinds only the runtime sends (it streams snapshots in chunks; the simulator sends them
whole, as ``InstallSnapshot``)."""

SIM_POINTS = (
    "amnesia_nemesis",
    "clock_skew",
    "compaction",
    "corrupt_found",
    "crash",
    "disk_wiped",
    "member_booted",
    "member_op_add",
    "member_op_promote",
    "member_op_remove",
    "member_op_return",
    "member_op_transfer",
    "member_returned",
    "member_stopped",
    "net_cut",
    "net_delivered_after_heal",
    "net_dropped",
    "net_duplicated",
    "net_long_delay",
    "partition_isolate",
    "partition_leader",
    "partition_leader_one_in",
    "partition_oneway",
    "partition_split",
    "pause",
    "record_rotted",
    "restart",
    "stale_leader_nemesis",
    "stray_catch_up",
    "write_error",
    "write_torn",
)
"""The faults the simulator injects, the membership changes it asks for, and what it
saw them do."""

KV_POINTS = (
    "clock_step",
    "expiry_tick_new_leader",
    "expiry_tick_proposed",
    "keys_expired",
    "kv_snapshot_with_ttls",
    "read_at_edge",
    "read_tick_proposed",
    "read_ttl_countdown",
    "stamp_below_clock",
    "wall_clock_skew",
)
"""The paths of the ``kv-expiry`` workload: clock ticks the leader proposed (the
replicated deletes of due keys), also after a leader change; keys the log deleted; a
snapshot holding TTLs installed; reads that met a key due by their node's clock and put a
tick through the log first; TTL countdowns; commands stamped below the replicated clock;
nodes whose wall clocks disagree, and a clock stepped during the run."""


def message_kinds() -> list[str]:
    """Every message kind the simulated cores exchange."""
    return sorted(k.__name__ for k in typing.get_args(Message) if k not in RUNTIME_ONLY)


def expected(workload: str = "log") -> list[str]:
    """Every name a swarm of ``workload`` must count at least once."""
    names = [f"{way}:{kind}" for kind in message_kinds() for way in ("sent", "delivered")]
    names += list(COVERAGE_POINTS) + list(SIM_POINTS)
    return names + list(KV_POINTS) if workload == "kv-expiry" else names


def missing(coverage: dict[str, int], workload: str = "log") -> list[str]:
    """The expected names ``coverage`` never counted."""
    return [name for name in expected(workload) if not coverage.get(name)]
