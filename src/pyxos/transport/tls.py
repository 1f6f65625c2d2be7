"""TLS for every pyxos port: contexts built from files, reloadable, and a logging listener.

One set of files serves a node, as in Redis (``tls-cert-file``, ``tls-key-file``,
``tls-ca-cert-file``): the node's certificate and key are presented to clients, to the
admin port's callers and to peers (as server and as client), and the CA verifies every
certificate presented to it. :class:`TLSContexts` holds the contexts of one node and can
rebuild them from the same paths (:meth:`TLSContexts.reload`, on SIGHUP), so certificates
and CA bundles can be replaced without a restart; connections made before a reload keep
the keys they were made with, new ones get the new files.

Why :class:`TLSListener` instead of ``create_server(ssl=...)``: asyncio's and uvloop's TLS
servers drop a connection whose handshake fails without telling the application (a
handshake error is an ``OSError`` and is logged only in debug mode), so a plain-text client
on the TLS port, a client certificate from a foreign CA or an expired one would vanish
without a trace. The listener accepts TCP connections itself and upgrades each with
``connect_accepted_socket``, which raises on a failed handshake; the reason is logged and
counted, and the node keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

AUTH_CLIENTS: Final = ("yes", "no", "optional")
"""``--tls-auth-clients``: require, ignore or accept (and verify) client certificates."""

ROLES: Final = ("peer", "clients", "admin")
"""Which contexts a node builds: peer links (mutual TLS), the client port, the admin port."""

HANDSHAKE_TIMEOUT: Final = 5.0

_PLAIN_TEXT_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL"}
)
"""OpenSSL's verdicts on a first record that is not TLS at all."""


class TLSConfigError(ValueError):
    """TLS files that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where one node's TLS material lives (PEM files)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    key_password: str | None = None


def _base(purpose: int, files: TLSFiles, *, needs_ca: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert_file, files.key_file, password=files.key_password)
    except FileNotFoundError as exc:
        raise TLSConfigError(f"cannot read {exc.filename}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"cannot use certificate {files.cert_file} with key {files.key_file}: {exc}"
        ) from exc
    if files.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=files.ca_file)
        except FileNotFoundError as exc:
            raise TLSConfigError(f"cannot read CA file {files.ca_file}: no such file") from exc
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(f"cannot use CA file {files.ca_file}: {exc}") from exc
    elif needs_ca:
        raise TLSConfigError("a CA file (--tls-ca-cert-file) is needed to verify certificates")
    return ctx


def server_context(files: TLSFiles, verify: str) -> ssl.SSLContext:
    """A listening context; ``verify`` is one of :data:`AUTH_CLIENTS`."""
    if verify not in AUTH_CLIENTS:
        raise TLSConfigError(f"bad tls-auth-clients {verify!r}: choose yes, no or optional")
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, files, needs_ca=verify != "no")
    ctx.verify_mode = {
        "yes": ssl.CERT_REQUIRED,
        "optional": ssl.CERT_OPTIONAL,
        "no": ssl.CERT_NONE,
    }[verify]
    return ctx


def peer_client_context(files: TLSFiles) -> ssl.SSLContext:
    """The dialling side of a peer link: presents this node's certificate, verifies the
    listener's against the CA. Host names are not checked by OpenSSL: the transport checks
    that the certificate names the node dialled (:mod:`pyxos.transport.certnames`)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, files, needs_ca=True)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TLSContexts:
    """The current TLS contexts of one node, rebuilt from their files by :meth:`reload`.

    ``roles`` says which to build (see :data:`ROLES`): the peer listener and dialer always
    verify against the CA; the client port verifies client certificates as
    ``auth_clients`` says; the admin port asks for one but does not require it (a bearer
    token is the other way in). Readers take the attribute at each new connection, so a
    reload takes effect for the next connection without touching the existing ones.
    """

    def __init__(
        self, files: TLSFiles, roles: tuple[str, ...] = ROLES, auth_clients: str = "yes"
    ) -> None:
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise TLSConfigError(f"unknown TLS roles {sorted(unknown)}")
        self.files = files
        self.roles = tuple(roles)
        self.auth_clients = auth_clients
        self._callbacks: list[Callable[[], None]] = []
        self.reloads = 0
        self.peer_server: ssl.SSLContext | None = None
        self.peer_client: ssl.SSLContext | None = None
        self.clients: ssl.SSLContext | None = None
        self.admin: ssl.SSLContext | None = None
        self._build()

    def _build(self) -> None:
        files, roles = self.files, self.roles
        # Build everything first: a bad file leaves every current context in place.
        peer_server = server_context(files, "yes") if "peer" in roles else None
        peer_client = peer_client_context(files) if "peer" in roles else None
        clients = server_context(files, self.auth_clients) if "clients" in roles else None
        admin_verify = "optional" if files.ca_file is not None else "no"
        admin = server_context(files, admin_verify) if "admin" in roles else None
        self.peer_server, self.peer_client = peer_server, peer_client
        self.clients, self.admin = clients, admin

    def on_reload(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every successful :meth:`reload`."""
        self._callbacks.append(callback)

    def reload(self) -> None:
        """Read the files again; raises :class:`TLSConfigError` (and keeps the old contexts)."""
        self._build()
        self.reloads += 1
        for callback in list(self._callbacks):
            callback()

    def require(self, role: str) -> ssl.SSLContext:
        """The current context for ``role`` ("peer_server", "peer_client", "clients", "admin")."""
        ctx: ssl.SSLContext | None = getattr(self, role)
        if ctx is None:
            raise RuntimeError(f"TLS context {role!r} was not configured")
        return ctx


def describe_tls_failure(exc: BaseException, timeout: float = HANDSHAKE_TIMEOUT) -> str:
    """Why a TLS handshake failed, in words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        if exc.verify_code in (2, 19, 20):  # no issuer / self-signed chain / local issuer
            return f"certificate not signed by the cluster CA ({message})"
        return f"certificate refused: {message}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _PLAIN_TEXT_REASONS:
            return f"not TLS: a plain-text client on a TLS port ({reason.lower()})"
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "no client certificate presented, and this port requires one"
        if "ALERT" in reason:
            return f"the other side refused the handshake: {reason.lower()}"
        return f"TLS error: {reason.lower() or exc}"
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ConnectionAbortedError) and "handshake" in str(exc)
    ):
        return f"no TLS handshake within {timeout:g}s"
    if isinstance(exc, ConnectionError | EOFError):
        return "connection closed during the TLS handshake"
    return f"TLS handshake failed: {type(exc).__name__}: {exc}"


OnReject = Callable[[str, tuple[str, int] | None, BaseException], None]
"""``(reason, peer address, exception)`` for every connection refused by the listener."""


def stream_factory(
    callback: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
    limit: int = 2**16,
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory that gives ``callback`` a stream pair, as ``start_server`` does."""

    def factory() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=limit)
        return asyncio.StreamReaderProtocol(reader, callback)  # type: ignore[arg-type]

    return factory


class TLSListener:
    """Accepts TCP connections and hands each, once its TLS handshake succeeded, to a
    protocol from ``protocol_factory``; a failed handshake is reported to ``on_reject``.

    ``context`` is called for every connection, so a reloaded context applies to the next
    one. Mirrors the parts of :class:`asyncio.Server` that pyxos uses (``sockets``,
    ``close``, ``wait_closed``).
    """

    def __init__(
        self,
        context: Callable[[], ssl.SSLContext],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        on_reject: OnReject,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._context = context
        self._factory = protocol_factory
        self._on_reject = on_reject
        self._timeout = handshake_timeout
        self.sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Accepted sockets not yet handed to a transport: close() must close them itself,
        # since an upgrade task cancelled before its first step never runs its own cleanup.
        self._unowned: set[socket.socket] = set()
        self.handshakes_failed = 0

    async def start(self, host: str, port: int, backlog: int = 511) -> tuple[str, int]:
        """Listen on every address of ``host``; return the first bound ``(host, port)``."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[int, object]] = set()
        try:
            for family, kind, proto, _name, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                if port == 0:  # every address on the same port, as asyncio does not either
                    port = sock.getsockname()[1]
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        for sock in self.sockets:
            self._spawn(self._accept(sock))
        bound = self.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(listening)
            except OSError as exc:  # e.g. out of file descriptors: try again shortly
                logging.getLogger("pyxos.tls").warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._unowned.add(conn)
            self._spawn(self._upgrade(conn, address))

    async def _upgrade(self, conn: socket.socket, address: object) -> None:
        peer = (str(address[0]), int(address[1])) if isinstance(address, tuple) else None
        loop = asyncio.get_running_loop()
        try:
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(self._timeout + 1):
                await loop.connect_accepted_socket(
                    self._factory,
                    conn,
                    ssl=self._context(),
                    ssl_handshake_timeout=self._timeout,
                )
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:
            conn.close()
            self.handshakes_failed += 1
            self._on_reject(describe_tls_failure(exc, self._timeout), peer, exc)
        finally:
            self._unowned.discard(conn)  # closed above, or owned by its transport now

    def close(self) -> None:
        """Stop accepting and abandon handshakes still under way."""
        for task in list(self._tasks):
            task.cancel()
        for conn in self._unowned:
            conn.close()
        self._unowned.clear()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    async def wait_closed(self) -> None:
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def still_trusted(peercert: dict[str, Any] | None, ctx: ssl.SSLContext) -> bool:
    """Whether a certificate verified earlier would still pass ``ctx``: its issuer is one of
    ``ctx``'s CAs and it has not expired. A cheap re-check for connections made before a
    reload; when in doubt it says no, and the connection is simply made again."""
    if not peercert:
        return False
    try:
        expired = ssl.cert_time_to_seconds(str(peercert["notAfter"])) <= time.time()
    except (KeyError, ValueError):
        return False
    subjects = {_freeze(ca.get("subject")) for ca in ctx.get_ca_certs()}
    return not expired and _freeze(peercert.get("issuer")) in subjects


def _freeze(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def looks_like_tls(data: bytes | memoryview) -> bool:
    """Whether the first bytes of a connection are a TLS handshake record (a ClientHello)."""
    return len(data) >= 2 and data[0] == 0x16 and data[1] == 0x03
