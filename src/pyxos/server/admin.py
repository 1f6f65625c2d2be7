"""The admin HTTP port: ``/metrics`` (Prometheus), ``/status`` (JSON), ``/health``, and
the membership routes (``/members``, ``/leader/transfer``: :mod:`.admin_members`).

A deliberately tiny HTTP/1.1 responder: a handful of endpoints do not justify a web
framework, and it must never let a malformed request disturb the node. Every connection
gets one response and is closed: 400 for a request line that is not HTTP, 405 (with
``Allow``) for methods other than GET and HEAD (POST and DELETE on the membership
routes), 404 for other paths, 431 for a request head over 8 KiB, 413 for a body over
4 KiB; a client that sends nothing complete within 5 seconds is disconnected.

Protection (``--admin-tls yes``, ``--admin-token``): the port can speak TLS with the node's
own certificate files, and once it is TLS or has a token, every path but ``/health`` (which
load balancers and orchestrators probe without credentials, and which tells no more than
whether the node serves) needs ``Authorization: Bearer <token>`` or a client certificate
signed by the cluster CA. No credentials get 401 with ``WWW-Authenticate``; a wrong token
gets 403. The check comes before routing, so unknown paths cannot be probed either. Tokens
are compared in constant time and never logged. Without TLS and without a token the port
is open, as before: keep it on loopback then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import TYPE_CHECKING

from pyxos.server.admin_members import MAX_BODY, is_member_path, member_route
from pyxos.transport.tls import TLSContexts, TLSListener, stream_factory

if TYPE_CHECKING:
    from pyxos.runtime.node import Node

log = logging.getLogger("pyxos.admin")
_MAX_REQUEST = 8192
_READ_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _content_length(head: bytes) -> int | None:
    """The request's ``Content-Length`` (0 when absent), or ``None`` if malformed."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return 0


class _TooLarge(Exception):
    """The request head is over :data:`_MAX_REQUEST` bytes."""


_OPEN_PATHS = frozenset({"/health"})
"""Answered without credentials on a protected port."""


class AdminServer:
    def __init__(
        self,
        node: Node,
        host: str,
        port: int,
        *,
        tls: TLSContexts | None = None,
        token: str | None = None,
    ) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.tls = tls
        self._token = token.encode() if token else None
        self.protected = tls is not None or token is not None
        self._server: asyncio.Server | TLSListener | None = None
        self.address: tuple[str, int] | None = None
        node.metrics.follow(node.status)

    async def start(self) -> None:
        if self.tls is not None:
            tls = self.tls
            listener = TLSListener(
                lambda: tls.require("admin"), stream_factory(self._serve), self._tls_refused
            )
            self._server = listener
            self.address = await listener.start(self.host, self.port)
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.address = self._server.sockets[0].getsockname()[:2]

    def _tls_refused(self, reason: str, peer: tuple[str, int] | None, exc: BaseException) -> None:
        where = f"{peer[0]}:{peer[1]}" if peer else "an unknown address"
        log.warning("admin port refused a connection from %s: %s", where, reason)

    def _authorize(self, head: bytes, writer: asyncio.StreamWriter) -> tuple[int, str] | None:
        """``None`` when the request may proceed, else the refusal's status and reason."""
        if writer.get_extra_info("peercert"):
            return None  # a client certificate that the CA verified during the handshake
        presented: bytes | None = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, credential = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = credential.strip()
        if presented is None:
            return 401, "no credentials"
        if self._token is None or not hmac.compare_digest(presented, self._token):
            return 403, "wrong bearer token"
        return None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        node = self.node
        if path == "/metrics":
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

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The request line and headers, at most :data:`_MAX_REQUEST` bytes."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        except asyncio.LimitOverrunError as exc:  # no blank line within the stream's limit
            raise _TooLarge from exc
        if len(head) > _MAX_REQUEST:
            raise _TooLarge
        return head

    async def _respond(
        self, head: bytes, reader: asyncio.StreamReader
    ) -> tuple[int, str, bytes, dict[str, str]]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, "text/plain", b"bad request\n", {}
        method, path = parts[0], parts[1].split("?", 1)[0]
        if is_member_path(path):
            body = b""
            if method in ("POST", "DELETE"):
                length = _content_length(head)
                if length is None:
                    return 400, "text/plain", b"bad Content-Length\n", {}
                if length > MAX_BODY:
                    return 413, "text/plain", b"request body too large\n", {}
                body = await asyncio.wait_for(reader.readexactly(length), _READ_TIMEOUT)
            return (*await member_route(self.node, method, path, body), {})
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n", {"Allow": "GET, HEAD"}
        return (*self._route(path), {})

    @staticmethod
    def _is_open(head: bytes) -> bool:
        parts = head.split(b"\r\n", 1)[0].split()
        path = parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) > 1 else ""
        return path in _OPEN_PATHS

    def _refuse(
        self, status: int, why: str, writer: asyncio.StreamWriter
    ) -> tuple[int, str, bytes, dict[str, str]]:
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "an unknown address"
        log.warning("admin request from %s refused (%d): %s", where, status, why)
        extra = {"WWW-Authenticate": 'Bearer realm="pyxos"'} if status == 401 else {}
        text = "authentication required" if status == 401 else "forbidden"
        return status, "text/plain", f"{text}: {why}\n".encode(), extra

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        extra: dict[str, str]
        try:
            try:
                head = await self._read_head(reader)
            except _TooLarge:
                status, ctype, body, extra = 431, "text/plain", b"request head too large\n", {}
                is_head = False
            else:
                is_head = head.split(None, 1)[:1] == [b"HEAD"]
                refusal = None
                if self.protected and not self._is_open(head):
                    refusal = self._authorize(head, writer)
                if refusal is not None:
                    status, ctype, body, extra = self._refuse(*refusal, writer)
                else:
                    status, ctype, body, extra = await self._respond(head, reader)
            headers = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n".encode()
                + (b"" if is_head else body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
