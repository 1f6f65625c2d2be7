"""The admin port's membership routes: the same operations as ``PAXOS`` and ``pyxos member``.

- ``GET /members``: ``{"version", "leader", "members": [rows]}``;
- ``POST /members`` with ``{"id": N, "peer": "host:port", "learner": false}``: add a node
  (a learner that becomes a voter once caught up, unless ``learner`` is true);
- ``POST /members/N/promote``, ``DELETE /members/N``;
- ``POST /leader/transfer`` with ``{"to": N}``.

Replies are JSON. A refusal is 409 with ``{"error": reason}``; a body that is not such
JSON (or names no ``host:port`` peer) is 400 (over :data:`MAX_BODY` bytes, 413); no
leader within the time, 503; proposed but not seen chosen in time, 504. The admin port's
authentication applies as to every other path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pyxos.runtime.errors import MembershipError, PyxosError, UnknownOutcome
from pyxos.runtime.membership import parse_address

if TYPE_CHECKING:
    from pyxos.runtime.node import Node

MAX_BODY = 4096
TIMEOUT = 30.0
Answer = tuple[int, str, bytes]


def is_member_path(path: str) -> bool:
    return path == "/members" or path.startswith("/members/") or path == "/leader/transfer"


def _json(status: int, value: Any) -> Answer:
    return status, "application/json", json.dumps(value).encode()


def _problem(status: int, message: str) -> Answer:
    return _json(status, {"error": message})


def _body(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


async def member_route(node: Node, method: str, path: str, raw: bytes) -> Answer:
    """Answer one membership request (``is_member_path(path)`` holds)."""
    if path == "/members" and method in ("GET", "HEAD"):
        membership = node.membership
        rows = membership.rows()
        return _json(
            200, {"version": membership.version, "leader": node.leader_id, "members": rows}
        )
    if method not in ("POST", "DELETE"):
        return _problem(405, f"{method} is not allowed on {path}")
    body = _body(raw)
    if body is None:
        return _problem(400, "the body must be a JSON object")
    parts = path.strip("/").split("/")
    try:
        if path == "/members" and method == "POST":
            node_id, peer = _positive(body.get("id")), body.get("peer")
            learner = body.get("learner", False)
            if (
                node_id is None
                or not isinstance(peer, str)
                or parse_address(peer) is None
                or not isinstance(learner, bool)
            ):
                return _problem(400, 'expected {"id": N, "peer": "host:port", "learner": false}')
            done = await node.membership.change(
                "add", node_id, peer, auto_promote=not learner, timeout=TIMEOUT
            )
            return _json(200, done)
        if len(parts) >= 2 and parts[0] == "members":
            node_id = _positive(int(parts[1])) if parts[1].isdigit() else None
            if node_id is None:
                return _problem(404, f"no such path {path}")
            if len(parts) == 3 and parts[2] == "promote" and method == "POST":
                return _json(200, await node.membership.change("promote", node_id, timeout=TIMEOUT))
            if len(parts) == 2 and method == "DELETE":
                return _json(200, await node.membership.change("remove", node_id, timeout=TIMEOUT))
            return _problem(404, f"no such path {path} for {method}")
        if path == "/leader/transfer" and method == "POST":
            to = _positive(body.get("to"))
            if to is None:
                return _problem(400, 'expected {"to": N}')
            leader = await node.membership.transfer(to, timeout=TIMEOUT)
            return _json(200, {"leader": leader})
        return _problem(404, f"no such path {path} for {method}")
    except MembershipError as exc:
        return _problem(409, str(exc))
    except UnknownOutcome as exc:
        return _problem(504, str(exc))
    except PyxosError as exc:
        return _problem(503, str(exc))
