"""``pyxos status``: ask every node for its ``INFO paxos`` section."""

from __future__ import annotations

import socket
from typing import Any


def _info(host: str, port: int, timeout: float = 2.0) -> dict[str, str]:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\npaxos\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.startswith(b"$"):
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
            elif data.endswith(b"\r\n"):
                break
    if not data.startswith(b"$"):
        raise ConnectionError(data.decode(errors="replace").strip())
    body = data.partition(b"\r\n")[2].decode(errors="replace")
    fields = {}
    for line in body.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


def fetch_status(endpoints: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for endpoint in [e.strip() for e in endpoints.split(",") if e.strip()]:
        host, _, port = endpoint.rpartition(":")
        try:
            info = _info(host or "127.0.0.1", int(port))
            rows.append(
                {
                    "endpoint": endpoint,
                    "node_id": int(info["node_id"]),
                    "role": info["role"],
                    "leader_id": int(info["leader_id"]) if info.get("leader_id") else None,
                    "ballot": info["ballot"],
                    "commit_index": int(info["commit_index"]),
                    "applied_index": int(info["applied_index"]),
                    "standing": info.get("standing", "voter"),
                    **({"reason": info["standing_reason"]} if "standing_reason" in info else {}),
                }
            )
        except (OSError, ValueError, KeyError) as exc:
            rows.append({"endpoint": endpoint, "error": str(exc) or type(exc).__name__})
    return rows
