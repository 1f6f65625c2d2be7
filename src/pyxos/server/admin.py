"""The admin HTTP port: ``/metrics`` (Prometheus), ``/status`` (JSON) and ``/health``.

A deliberately tiny HTTP/1.1 responder: three read-only GET endpoints do not justify a web
framework, and it must never let a malformed request disturb the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyxos.runtime.node import Node

log = logging.getLogger("pyxos.admin")
_MAX_REQUEST = 8192


class AdminServer:
    def __init__(self, node: Node, host: str, port: int) -> None:
        self.node = node
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.address = self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        node = self.node
        if path == "/metrics":
            self._refresh_gauges()
            return 200, "text/plain; version=0.0.4; charset=utf-8", node.metrics.render()
        if path == "/status":
            return 200, "application/json", json.dumps(node.status()).encode()
        if path == "/health":
            if node.failed:
                return (
                    503,
                    "application/json",
                    json.dumps({"ok": False, "reason": node.failed}).encode(),
                )
            body = {"ok": True, "role": node.role.value, "leader_id": node.leader_id}
            return 200, "application/json", json.dumps(body).encode()
        return 404, "text/plain", b"not found: try /metrics, /status or /health\n"

    def _refresh_gauges(self) -> None:
        node, m = self.node, self.node.metrics
        status = node.status()
        m.commit_index.set(status["commit_index"])
        m.applied_index.set(status["applied_index"])
        m.ballot_round.set(node.replica.promised.round)
        m.is_leader.set(1 if status["role"] == "leader" else 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            if len(head) > _MAX_REQUEST:
                raise ValueError("request too large")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            is_head = bool(parts) and parts[0] == "HEAD"
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                status, ctype, body = 400, "text/plain", b"bad request\n"
            elif parts[0] not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            else:
                status, ctype, body = self._route(parts[1].split("?", 1)[0])
            reason = {
                200: "OK",
                400: "Bad Request",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if is_head else body)
            )
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            ConnectionError,
            UnicodeDecodeError,
        ):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
