"""Where to send: the endpoints a client is given, and which of them leads.

A client asks every endpoint for ``INFO paxos`` and sends to the one the others name as
leader, which saves a write the follower-to-leader hop; when the nodes do not agree it keeps
the endpoint it has, and any node still takes the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyxos.resp.requests import encode_command

__all__ = ["INFO_PAXOS", "Endpoint", "info_fields", "parse_endpoints", "pick_leader"]

Endpoint = tuple[str, int]


def parse_endpoints(endpoints: str | Sequence[str | Endpoint]) -> list[Endpoint]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[Endpoint] = []
    for item in items:
        if isinstance(item, tuple):
            out.append(item)
            continue
        host, _, port = item.strip().rpartition(":")
        out.append((host or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no endpoints given")
    return out


def info_fields(reply: Any) -> dict[str, str]:
    if not isinstance(reply, bytes):
        return {}
    fields = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


INFO_PAXOS = encode_command([b"INFO", b"paxos"])


def pick_leader(infos: dict[int, dict[str, str]]) -> int | None:
    """The index of the endpoint whose node the others name as leader, if any."""
    by_node = {f.get("node_id"): i for i, f in infos.items() if f.get("node_id")}
    for fields in infos.values():
        leader = fields.get("leader_id")
        if leader and leader in by_node:
            return by_node[leader]
    return None
