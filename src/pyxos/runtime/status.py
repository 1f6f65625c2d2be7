"""What ``/status``, ``INFO paxos`` and ``pyxos status`` report about a node."""

from __future__ import annotations

import time
from typing import Any

from pyxos.core.replica import Replica, Role
from pyxos.runtime.standing import describe_standing
from pyxos.transport import PeerStatus


def node_status(
    replica: Replica,
    applied: int,
    failed: str | None,
    members: dict[int, tuple[str, int]],
    peers: dict[int, PeerStatus],
) -> dict[str, Any]:
    """One node's role, standing, indexes and links, as a JSON-ready dict."""
    now = time.monotonic()
    links = {}
    for pid, st in peers.items():
        last = st.last_received_monotonic
        links[str(pid)] = {
            "address": "{}:{}".format(*members[pid]),
            "connected": st.connected,
            "inbound_connected": st.inbound_connected,
            "last_contact_seconds": None if last is None else round(now - last, 3),
        }
    r = replica
    return {
        "node_id": r.id,
        "role": r.role.value,
        "leader_id": r.leader,
        "ballot": str(r.ballot if r.role is Role.LEADER else r.promised),
        "commit_index": r.commit_index,
        "applied_index": applied,
        "snapshot_index": r.snapshot_slot,
        **describe_standing(r),
        "failed": failed,
        "peers": links,
    }
