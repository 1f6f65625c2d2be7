"""The text of ``INFO``: Redis's sections that clients rely on, plus a ``paxos`` section."""

from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyxos.runtime.node import Node
    from pyxos.server.redis_server import RedisServer

_STARTED = time.monotonic()
_ALL = ("server", "clients", "replication", "paxos", "keyspace")


def info_text(node: Node, server: RedisServer, sections: list[str]) -> str:
    """``field:value`` lines grouped under ``# Section`` headers, CRLF-separated."""
    wanted = {s.lower() for s in sections} or {"default"}
    if wanted & {"all", "everything", "default"}:
        wanted = set(_ALL)
    status = node.status()
    out: list[str] = []
    if "server" in wanted:
        address = server.address or (server.host, server.port)
        out += [
            "# Server",
            "redis_version:7.0.0",
            "pyxos_version:0.1.0",
            "redis_mode:" + ("cluster" if len(node.config.members) > 1 else "standalone"),
            f"os:{platform.system()} {platform.release()} {platform.machine()}",
            f"process_id:{os.getpid()}",
            f"tcp_port:{address[1]}",
            f"uptime_in_seconds:{int(time.monotonic() - _STARTED)}",
            "",
        ]
    if "clients" in wanted:
        out += ["# Clients", f"connected_clients:{server.client_count}", ""]
    if "replication" in wanted:
        leader = status["leader_id"]
        role = "master" if status["role"] == "leader" else "slave"
        lines = ["# Replication", f"role:{role}"]
        if role == "slave" and leader is not None:
            host, port = node.config.members[leader]
            lines += [f"master_host:{host}", f"master_port:{port}"]
        lines += [f"connected_slaves:{len(node.config.members) - 1}", ""]
        out += lines
    if "paxos" in wanted:
        out += [
            "# Paxos",
            f"node_id:{status['node_id']}",
            f"role:{status['role']}",
            f"leader_id:{status['leader_id'] if status['leader_id'] is not None else ''}",
            f"ballot:{status['ballot']}",
            f"commit_index:{status['commit_index']}",
            f"applied_index:{status['applied_index']}",
            f"snapshot_index:{status['snapshot_index']}",
            f"members:{','.join(str(m) for m in sorted(node.config.members))}",
            f"standing:{status['standing']}",
            f"voter:{'yes' if status['voter'] else 'no'}",
            f"incarnation:{status['incarnation']}",
        ]
        if "standing_reason" in status:
            out.append(f"standing_reason:{status['standing_reason']}")
        out.append("")
    if "digest" in wanted:
        # Not in "all": hashing the whole state is for convergence checks, not dashboards.
        out += [
            "# Digest",
            f"applied_index:{status['applied_index']}",
            f"state_digest:{server.kv.digest()}",
            "",
        ]
    if "keyspace" in wanted:
        count = server.kv.read_value([b"dbsize"])
        keys = count if isinstance(count, int) else 0
        out += ["# Keyspace"]
        if keys:
            out.append(f"db0:keys={keys},expires=0,avg_ttl=0")
        out.append("")
    return "\r\n".join(out)
