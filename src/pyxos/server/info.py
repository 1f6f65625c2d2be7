"""The text of ``INFO``: Redis 7's sections and the fields clients and tools read, plus a
``paxos`` section.

Sections and field names are Redis 7.0's, so clients that parse INFO at connect (redis-py's
test fixtures read ``redis_version``, ``arch_bits`` and ``cluster_enabled``) work unchanged.
Values are this node's: ``redis_version`` is the Redis release whose commands and replies
pyxos implements (7.0.15); ``redis_mode:standalone`` and ``cluster_enabled:0`` because a pyxos
cluster is not a Redis Cluster (no hash slots, no MOVED: every node takes every key), and
``role:master`` on every node because every node accepts writes. Memory figures are this
process's (resident size, Python's allocator), not Redis's.
"""

from __future__ import annotations

import os
import platform
import resource
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyxos.runtime.node import Node
    from pyxos.server.port_state import ClientPort

REDIS_VERSION = "7.0.15"
"""The Redis release whose command set and replies pyxos follows."""
PYXOS_VERSION = "0.1.0"

_STARTED = time.monotonic()
_STARTED_WALL = int(time.time())
_RUN_ID = os.urandom(20).hex()
_DEFAULT = (
    "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
    "errorstats", "cluster", "keyspace", "paxos",
)  # fmt: skip
_ALL = (*_DEFAULT[:-2], "commandstats", *_DEFAULT[-2:])


def started_at() -> int:
    """Unix time this process started (what LASTSAVE reports before any snapshot)."""
    return _STARTED_WALL


def _human(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.2f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.2f}T"  # pragma: no cover


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def info_text(node: Node, server: ClientPort, sections: list[str]) -> str:
    """``field:value`` lines grouped under ``# Section`` headers, CRLF-separated."""
    wanted = {s.lower() for s in sections} or {"default"}
    order: tuple[str, ...] = _ALL if wanted & {"all", "everything"} else _DEFAULT
    if wanted & {"all", "everything", "default"}:
        wanted |= set(order)
    else:
        order = (*_ALL, "digest")
    status = node.status()
    out: list[str] = []
    for name in order:
        if name in wanted:
            out += [f"# {'CPU' if name == 'cpu' else name.capitalize()}", *_SECTIONS[name](
                node, server, status
            ), ""]  # fmt: skip
    return "\r\n".join(out)


def _server(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    address = server.address or (server.host, server.port)
    uptime = int(time.monotonic() - _STARTED)
    return [
        f"redis_version:{REDIS_VERSION}",
        f"pyxos_version:{PYXOS_VERSION}",
        "redis_git_sha1:00000000",
        "redis_git_dirty:0",
        "redis_mode:standalone",
        f"os:{platform.system()} {platform.release()} {platform.machine()}",
        f"arch_bits:{struct.calcsize('P') * 8}",
        "multiplexing_api:epoll",
        f"python_version:{platform.python_version()}",
        f"process_id:{os.getpid()}",
        "process_supervised:no",
        f"run_id:{_RUN_ID}",
        f"tcp_port:{address[1]}",
        f"server_time_usec:{time.time_ns() // 1000}",
        f"uptime_in_seconds:{uptime}",
        f"uptime_in_days:{uptime // 86400}",
        "hz:10",
        "configured_hz:10",
        f"executable:{os.path.realpath(sys.argv[0]) if sys.argv else ''}",
        "config_file:",
        "io_threads_active:0",
    ]


def _clients(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return [
        f"connected_clients:{server.client_count}",
        "cluster_connections:0",
        f"maxclients:{server.limits.max_clients}",
        "blocked_clients:0",
        "tracking_clients:0",
        "clients_in_timeout_table:0",
    ]


def _memory(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    rss = _rss()
    peak = max(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    total = _total_memory()
    return [
        f"used_memory:{rss}",
        f"used_memory_human:{_human(rss)}",
        f"used_memory_rss:{rss}",
        f"used_memory_rss_human:{_human(rss)}",
        f"used_memory_peak:{peak}",
        f"used_memory_peak_human:{_human(peak)}",
        f"total_system_memory:{total}",
        f"total_system_memory_human:{_human(total)}",
        f"number_of_cached_scripts:{server.kv.script_count}",
        "maxmemory:0",
        "maxmemory_human:0B",
        "maxmemory_policy:noeviction",
        "mem_allocator:libc",
        "lazyfree_pending_objects:0",
    ]


def _persistence(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    # Every write is in the fsynced log before it is acknowledged: as AOF with
    # appendfsync always would be. Snapshots compact that log.
    return [
        "loading:0",
        "async_loading:0",
        f"rdb_last_save_time:{server.last_save}",
        "rdb_bgsave_in_progress:0",
        "rdb_last_bgsave_status:ok",
        "aof_enabled:1",
        "aof_rewrite_in_progress:0",
        "aof_last_write_status:ok",
        f"pyxos_snapshot_index:{status['snapshot_index']}",
    ]


def _stats(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    stats = server.stats
    return [
        f"total_connections_received:{stats.connections}",
        f"total_commands_processed:{sum(stats.calls.values())}",
        "instantaneous_ops_per_sec:0",
        "rejected_connections:0",
        f"expired_keys:{server.kv.expired_keys}",
        "evicted_keys:0",
        "pubsub_channels:0",
        "pubsub_patterns:0",
        f"total_error_replies:{stats.errors}",
        f"unexpected_error_replies:{stats.unexpected_errors}",
    ]


def _replication(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    # Every pyxos node takes writes, so each reports itself a master with no replicas in
    # Redis's sense; the Paxos roles are in the paxos section.
    return ["role:master", "connected_slaves:0", "master_failover_state:no-failover"]


def _cpu(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    t = os.times()
    return [
        f"used_cpu_sys:{t.system:.6f}",
        f"used_cpu_user:{t.user:.6f}",
        f"used_cpu_sys_children:{t.children_system:.6f}",
        f"used_cpu_user_children:{t.children_user:.6f}",
    ]


def _modules(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return []


def _errorstats(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return [f"errorstat_{code}:count={n}" for code, n in sorted(server.stats.error_codes.items())]


def _cluster(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return ["cluster_enabled:0"]


def _commandstats(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    stats = server.stats
    names = sorted(set(stats.calls) | set(stats.rejected))
    return [
        f"cmdstat_{name}:calls={stats.calls.get(name, 0)},"
        f"rejected_calls={stats.rejected.get(name, 0)}"
        for name in names
    ]


def _keyspace(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return [
        f"db{index}:keys={keys},expires={expires},avg_ttl={avg}"
        for index, keys, expires, avg in server.kv.keyspace_info()
    ]


def _paxos(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    return [
        f"node_id:{status['node_id']}",
        f"role:{status['role']}",
        f"leader_id:{status['leader_id'] if status['leader_id'] is not None else ''}",
        f"ballot:{status['ballot']}",
        f"commit_index:{status['commit_index']}",
        f"applied_index:{status['applied_index']}",
        f"snapshot_index:{status['snapshot_index']}",
        *_members(node),
        *_standing(status),
    ]


def _members(node: Node) -> list[str]:
    # As Redis lists replicas (``slave0:ip=...,port=...``): one line per member, which
    # redis-py parses into a dict.
    membership = node.membership
    rows = membership.rows()
    lines = [
        f"members:{','.join(str(r['id']) for r in rows)}",
        f"voters:{','.join(str(r['id']) for r in rows if r['role'] == 'voter')}",
        f"learners:{','.join(str(r['id']) for r in rows if r['role'] == 'learner')}",
        f"membership_version:{membership.version}",
    ]
    for r in rows:
        caught = "" if r["caught_up"] is None else "yes" if r["caught_up"] else "no"
        lines.append(
            f"member_{r['id']}:address={r['address']},role={r['role']},"
            f"leader={int(r['leader'])},caught_up={caught}"
        )
    return lines


def _standing(status: dict[str, object]) -> list[str]:
    # The fields a node reports about its own standing as a voter, where its runtime
    # has them (as INFO paxos always printed them).
    if "standing" not in status:
        return []
    lines = [
        f"standing:{status['standing']}",
        f"voter:{'yes' if status['voter'] else 'no'}",
        f"incarnation:{status['incarnation']}",
    ]
    if "standing_reason" in status:
        lines.append(f"standing_reason:{status['standing_reason']}")
    return lines


def _digest(node: Node, server: ClientPort, status: dict[str, object]) -> list[str]:
    # Not in "all": hashing the whole state is for convergence checks, not dashboards.
    return [f"applied_index:{status['applied_index']}", f"state_digest:{server.kv.digest()}"]


_SECTIONS = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "modules": _modules,
    "errorstats": _errorstats,
    "cluster": _cluster,
    "commandstats": _commandstats,
    "keyspace": _keyspace,
    "paxos": _paxos,
    "digest": _digest,
}
