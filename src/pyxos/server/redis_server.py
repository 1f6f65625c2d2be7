"""The client port: the Redis protocol in front of a replicated :class:`KVStateMachine`.

Any node accepts any command. Writes are proposed through the local core (a follower's
core forwards them to the leader) and answered once this node has applied them; reads
wait for a read index confirmed by the leader and are then answered from local state;
connection commands (PING, HELLO, AUTH, INFO...) never touch the log. Pipelined commands
are started as they arrive and answered strictly in order.

Exactly-once for retries: ``RID <client_id> <seq> <command...>`` runs ``command`` inside
the replicated session of ``client_id``; a retry with the same ``seq`` returns the cached
reply instead of applying again. ``pyxos.Client`` uses it; plain Redis clients do not need
to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pyxos.kv import Classification, CommandKind, KVStateMachine, classify, encode_request, to_resp3
from pyxos.kv.commands import CommandSpec, string2ll
from pyxos.kv.keyspace import NUM_DBS
from pyxos.runtime.errors import NodeFailed, PyxosError, Unavailable, UnknownOutcome
from pyxos.runtime.node import Node
from pyxos.server.info import info_text
from pyxos.server.resp import ProtocolError, RequestParser

log = logging.getLogger("pyxos.server")

_Reply = bytes | asyncio.Future[bytes] | Coroutine[Any, Any, bytes]
"""A reply ready now, one that a future will bring, or one a coroutine will compute."""

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
NULL_ARRAY = b"*0\r\n"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection and per-server limits; each is answered with an error, not a crash."""

    max_clients: int = 10_000
    max_bulk_len: int = 64 * 1024 * 1024
    max_args: int = 1024 * 1024
    max_pipeline: int = 10_000
    """Commands one connection may have in flight before the server stops reading it."""
    timeout: float = 5.0
    """How long a command may wait for a leader or for its slot before an error."""
    expire_interval: float = 0.1
    """How often the leader checks for keys whose time came, proposing a clock tick that
    deletes them (so an idle cluster still expires keys)."""


def now_ms() -> int:
    """This node's wall clock in ms since the epoch: the time stamp of the commands it takes
    (the state machine's clock is the largest stamp applied, see :mod:`pyxos.kv.keyspace`)."""
    return time.time_ns() // 1_000_000


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _error(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


class RedisServer:
    """Serves RESP on ``host:port`` for one node."""

    def __init__(
        self,
        node: Node,
        kv: KVStateMachine,
        host: str,
        port: int,
        *,
        password: str | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.node = node
        self.kv = kv
        self.host = host
        self.port = port
        self.password = password.encode() if password else None
        self.limits = limits or ServerLimits()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._next_client_id = 0
        self.address: tuple[str, int] | None = None
        self._expirer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.address = sock.getsockname()[:2]
        self._expirer = asyncio.create_task(self._expire_loop(), name="pyxos-expirer")
        log.info("node %d serving Redis clients on %s:%d", self.node.id, *self.address)

    async def _expire_loop(self) -> None:
        """While this node leads and some key's time has come by its clock, propose a clock
        tick: applying it deletes every due key on every replica. One tick at a time."""
        interval = self.limits.expire_interval
        while True:
            await asyncio.sleep(interval)
            due = self.kv.next_expiry()
            if due is None or self.node.role.value != "leader":
                continue
            clock = now_ms()
            if due > clock:
                continue
            with contextlib.suppress(PyxosError):
                await self.node.submit(encode_request((), time=clock), self.limits.timeout)

    async def close(self) -> None:
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @property
    def client_count(self) -> int:
        return len(self._connections)


class _Connection(asyncio.Protocol):
    """One client, as a protocol object: callbacks instead of a task per connection.

    Commands are dispatched as their bytes arrive and replies leave strictly in request
    order: ``_pending`` holds each reply (bytes, or a future that will bring them) and
    ``_flush`` writes every finished head in one ``write``. A read never overtakes the
    writes sent before it on this connection, nor a write the reads before it: commands of
    the other kind wait in ``_held`` until the current run is answered.
    """

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.node = server.node
        self.id = 0
        self.protocol = 2
        self.db = 0
        self.name = b""
        self.authenticated = server.password is None
        limits = server.limits
        self.parser = RequestParser(
            max_bulk_len=limits.max_bulk_len,
            max_args=limits.max_args,
            require_auth=not self.authenticated,
        )
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()  # cached: each lookup costs a getpid call
        self._pending: deque[bytes | asyncio.Future[bytes]] = deque()
        self._held: deque[list[bytes]] = deque()
        self._run_kind = CommandKind.LOCAL
        self._run_open = 0
        self._paused = False
        self._write_paused = False
        self._final_error: bytes | None = None

    # ---- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = tcp = cast(asyncio.Transport, transport)
        sock = tcp.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = self.server
        if len(server._connections) >= server.limits.max_clients:
            self.node.metrics.client_errors.labels("maxclients").inc()
            tcp.write(b"-ERR max number of clients reached\r\n")
            tcp.close()
            self.closing = True
            return
        server._next_client_id += 1
        self.id = server._next_client_id
        server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server._connections.discard(self)
        self._held.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closing or self._final_error is not None:
            return
        try:
            commands = self.parser.feed(data)
        except ProtocolError as exc:
            # Like Redis: run what came before the bad bytes, answer the error, close.
            self.node.metrics.client_errors.labels("protocol").inc()
            commands, self._final_error = exc.commands, exc.reply
        for argv in commands:
            if self._held or self.closing:
                self._held.append(argv)
            else:
                self._dispatch(argv)
        self._finish_if_done()
        self._flush()

    def _finish_if_done(self) -> None:
        if self._final_error is not None and not self._held and not self.closing:
            self._pending.append(self._final_error)
            self.closing = True

    # ---- dispatch and ordered replies

    def _dispatch(self, argv: list[bytes]) -> None:
        is_rid = len(argv) > 3 and argv[0].lower() == b"rid"
        known = classify(argv[3:] if is_rid else argv)
        kind = known.kind
        if kind is not self._run_kind and self._run_open:
            self._held.append(argv)
            return
        self._run_kind = kind
        try:
            reply = self._handle(argv, known=None if is_rid else known)
        except Exception as exc:  # a bug must cost one reply, never the connection
            log.exception("command failed")
            reply = _error(f"ERR internal error: {exc!r}")
        if isinstance(reply, bytes):
            self._pending.append(reply)
            return
        future = reply if isinstance(reply, asyncio.Future) else asyncio.ensure_future(reply)
        self._run_open += 1
        self._pending.append(future)
        future.add_done_callback(self._on_done)
        self._update_reading()

    def _on_done(self, future: asyncio.Future[bytes]) -> None:
        self._run_open -= 1
        while self._held and not self._run_open and not self.closing:
            self._dispatch(self._held.popleft())
        self._finish_if_done()
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        out: list[bytes] = []
        while pending:
            head = pending[0]
            if isinstance(head, bytes):
                out.append(head)
            elif head.done():
                out.append(self._reply_bytes(head))
            else:
                break
            pending.popleft()
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.closing and not pending and transport is not None:
            transport.close()
        self._update_reading()

    def _update_reading(self) -> None:
        """Back-pressure: stop reading while too many replies are owed or unsent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        busy = self._write_paused or len(self._pending) + len(self._held) >= (
            self.server.limits.max_pipeline
        )
        if busy and not self._paused:
            self._paused = True
            transport.pause_reading()
        elif not busy and self._paused:
            self._paused = False
            transport.resume_reading()

    # ------------------------------------------------------------------ commands

    def _handle(
        self,
        argv: Sequence[bytes],
        client: int = 0,
        seq: int = 0,
        known: Classification | None = None,
    ) -> _Reply:
        metrics = self.node.metrics
        name = argv[0].lower() if argv else b""
        if not self.authenticated and name not in (b"auth", b"hello", b"quit"):
            metrics.client_errors.labels("noauth").inc()
            return NOAUTH
        if name == b"rid" and client == 0:
            return self._with_session(argv)
        kind, spec, error = known if known is not None else classify(argv)
        if error is not None:
            metrics.client_errors.labels("invalid").inc()
            return error
        if kind is CommandKind.WRITE:
            metrics.ops_write.inc()
            assert spec is not None
            return self._write(argv, client, seq, spec)
        if kind is CommandKind.READ:
            metrics.ops_read.inc()
            return self._read(argv)
        metrics.ops_local.inc()
        return self._local(name, argv)

    def _with_session(self, argv: Sequence[bytes]) -> _Reply:
        if len(argv) < 4:
            return b"-ERR wrong number of arguments for 'rid' command\r\n"
        client, seq = string2ll(argv[1]), string2ll(argv[2])
        if client is None or seq is None or client <= 0 or seq <= 0:
            return b"-ERR RID needs a positive client id and sequence number\r\n"
        inner = argv[3:]
        kind, spec, error = classify(inner)
        if error is not None:
            return error
        if kind is not CommandKind.WRITE:
            return self._handle(inner, client, seq)
        assert spec is not None
        return self._write(inner, client, seq, spec)

    def _write(self, argv: Sequence[bytes], client: int, seq: int, spec: CommandSpec) -> _Reply:
        """Propose a write. The fast path returns the node's own future (no task, no timer);
        :meth:`_reply_bytes` turns its result or error into RESP when it is sent.

        The command is stamped with this node's clock unless its result cannot depend on
        time (a plain ``SET k v``), and carries the connection's database."""
        stamp = 0 if len(argv) <= spec.untimed_argc else now_ms()
        payload = encode_request(argv, client, seq, stamp, self.db)
        try:
            future = self.node.submit_future(payload, self.server.limits.timeout)
        except PyxosError as exc:
            return self._error_reply(exc)
        if future is None:
            return self._write_slow(payload)  # no leader known yet: wait for one
        if self.protocol == 3:
            out: asyncio.Future[bytes] = self.loop.create_future()
            future.add_done_callback(lambda f: out.set_result(self._reply_bytes(f)))
            return out
        return future

    async def _write_slow(self, payload: bytes) -> bytes:
        try:
            reply = await self.node.submit(payload, self.server.limits.timeout)
        except PyxosError as exc:
            return self._error_reply(exc)
        return to_resp3(reply) if self.protocol == 3 else reply

    def _read(self, argv: Sequence[bytes]) -> bytes | asyncio.Future[bytes]:
        """Ask for a read index; answer from local state once it is applied here."""
        kv, protocol, node, db = self.server.kv, self.protocol, self.node, self.db
        if node.test_bug == "stale-reads":
            return kv.read(argv, protocol, db)
        try:
            index = node.read_future(self.server.limits.timeout)
        except PyxosError as exc:
            return self._error_reply(exc)
        out: asyncio.Future[bytes] = self.loop.create_future()

        def done(f: asyncio.Future[bool]) -> None:
            exc = f.exception()
            if exc is not None:
                out.set_result(self._error_reply(exc))
            elif f.result():
                node.metrics.reads.inc()
                if not kv.expiring:
                    out.set_result(kv.read(argv, protocol, db))
                    return
                clock = now_ms()
                if not kv.due(argv, db, clock):
                    out.set_result(kv.read(argv, protocol, db, clock))
                    return
                task = asyncio.ensure_future(self._tick_then_read(argv, clock))
                task.add_done_callback(lambda t: out.set_result(t.result()))
            else:  # no leader confirmed it: retry, waiting for a leader
                task = asyncio.ensure_future(self._read_slow(argv))
                task.add_done_callback(lambda t: out.set_result(t.result()))

        index.add_done_callback(done)
        return out

    async def _read_slow(self, argv: Sequence[bytes]) -> bytes:
        kv = self.server.kv
        try:
            await self.node.read(lambda _: None, self.server.limits.timeout)
        except PyxosError as exc:
            return self._error_reply(exc)
        clock = now_ms()
        if kv.expiring and kv.due(argv, self.db, clock):
            return await self._tick_then_read(argv, clock)
        return kv.read(argv, self.protocol, self.db, clock)

    async def _tick_then_read(self, argv: Sequence[bytes], clock: int) -> bytes:
        """The read touches a key that is past its time by this node's clock but not yet by
        the replicated one: put a clock tick through the log first (which deletes the key
        on every replica), then answer. No node can report the key present after this."""
        try:
            await self.node.submit(encode_request((), time=clock), self.server.limits.timeout)
        except PyxosError as exc:
            return self._error_reply(exc)
        return self.server.kv.read(argv, self.protocol, self.db, clock)

    def _reply_bytes(self, future: asyncio.Future[bytes]) -> bytes:
        """The RESP bytes for a finished write future: its reply, or the error for why not."""
        exc = future.exception()
        if exc is not None:
            return self._error_reply(exc)
        reply = future.result()
        return to_resp3(reply) if self.protocol == 3 else reply

    def _error_reply(self, exc: BaseException) -> bytes:
        if isinstance(exc, Unavailable):
            return self._fail("NOLEADER", f"no leader reachable, command not applied ({exc})")
        if isinstance(exc, UnknownOutcome):
            return self._fail("TIMEOUT", f"outcome unknown, the command may still apply ({exc})")
        if isinstance(exc, NodeFailed):
            return self._fail("NODEFAILED", f"this node stopped: {exc}")
        log.error("unexpected error serving a command: %r", exc)
        return self._fail("ERR", f"internal error: {exc!r}")

    def _fail(self, code: str, text: str) -> bytes:
        self.node.metrics.client_errors.labels(code.lower()).inc()
        return _error(f"{code} {text}")

    def _local(self, name: bytes, argv: Sequence[bytes]) -> bytes:
        if name == b"ping":
            if len(argv) > 2:
                return b"-ERR wrong number of arguments for 'ping' command\r\n"
            return _bulk(argv[1]) if len(argv) == 2 else PONG
        if name == b"echo":
            return _bulk(argv[1])
        if name == b"quit":
            self.closing = True
            return OK
        if name == b"auth":
            return self._auth(argv[1:])
        if name == b"hello":
            return self._hello(argv[1:])
        if name == b"select":
            index = string2ll(argv[1])
            if index is None or not -(2**31) <= index < 2**31:
                return b"-ERR value is not an integer or out of range\r\n"
            if not 0 <= index < NUM_DBS:
                return b"-ERR DB index is out of range\r\n"
            self.db = index
            return OK
        if name == b"info":
            text = info_text(self.node, self.server, [a.decode(errors="replace") for a in argv[1:]])
            return _bulk(text.encode())
        if name == b"client":
            return self._client(argv[1:])
        if name == b"command":
            return NULL_ARRAY
        if name == b"config":
            sub = argv[1].lower()
            if sub == b"get":
                return NULL_ARRAY if self.protocol == 2 else b"%0\r\n"
            if sub in (b"set", b"resetstat", b"rewrite"):
                return OK
            return _error(f"ERR unknown subcommand '{argv[1].decode(errors='replace')}'")
        if name in (b"readonly", b"readwrite"):
            return OK
        if name == b"reset":
            self.protocol = 2
            self.db = 0
            self.name = b""
            self.authenticated = self.server.password is None
            self.parser.require_auth = not self.authenticated
            return b"+RESET\r\n"
        return _error(f"ERR command '{name.decode(errors='replace')}' is not supported")

    def _auth(self, args: Sequence[bytes]) -> bytes:
        password = self.server.password
        if len(args) > 2:
            return b"-ERR syntax error\r\n"
        if password is None:
            return (
                b"-ERR AUTH <password> called without any password configured for the "
                b"default user. Are you sure your configuration is correct?\r\n"
            )
        user = args[0] if len(args) == 2 else b"default"
        if user != b"default" or args[-1] != password:
            return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        self.authenticated = True
        self.parser.require_auth = False
        return OK

    def _hello(self, args: Sequence[bytes]) -> bytes:
        protocol = self.protocol
        i = 0
        if args:
            version = string2ll(args[0])
            if version is None:
                return b"-ERR Protocol version is not an integer or out of range\r\n"
            if version not in (2, 3):
                return b"-NOPROTO unsupported protocol version\r\n"
            protocol = version
            i = 1
        while i < len(args):
            opt = args[i].lower()
            if opt == b"auth" and i + 2 < len(args):
                reply = self._auth(args[i + 1 : i + 3])
                if reply != OK:
                    return reply
                i += 3
            elif opt == b"setname" and i + 1 < len(args):
                self.name = args[i + 1]
                i += 2
            else:
                return _error(
                    f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"
                )
        if not self.authenticated:
            return NOAUTH
        self.protocol = protocol
        status = self.node.status()
        fields: list[tuple[bytes, bytes]] = [
            (b"server", _bulk(b"pyxos")),
            (b"version", _bulk(b"7.0.0")),
            (b"proto", b":%d\r\n" % protocol),
            (b"id", b":%d\r\n" % self.id),
            (b"mode", _bulk(b"cluster" if len(self.node.config.members) > 1 else b"standalone")),
            (b"role", _bulk(b"master" if status["role"] == "leader" else b"replica")),
            (b"modules", NULL_ARRAY),
        ]
        head = b"%%%d\r\n" % len(fields) if protocol == 3 else b"*%d\r\n" % (2 * len(fields))
        return head + b"".join(_bulk(k) + v for k, v in fields)

    def _client(self, args: Sequence[bytes]) -> bytes:
        sub = args[0].lower()
        if sub == b"setname" and len(args) == 2:
            self.name = args[1]
            return OK
        if sub == b"getname":
            return _bulk(self.name) if self.name else b"$-1\r\n"
        if sub == b"id":
            return b":%d\r\n" % self.id
        if sub in (b"setinfo", b"no-evict", b"no-touch", b"reply"):
            return OK
        if sub == b"info":
            return _bulk(b"id=%d name=%s db=0 resp=%d\n" % (self.id, self.name, self.protocol))
        return _error(
            f"ERR unknown subcommand '{args[0].decode(errors='replace')}'. Try CLIENT HELP."
        )
