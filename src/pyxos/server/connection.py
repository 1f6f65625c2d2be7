"""One client connection of the client port: parsing, dispatch, and replies in order.

A connection is an asyncio protocol object (callbacks, not a task per connection), put
together from the command mixins (:mod:`~pyxos.server.local_commands`,
:mod:`~pyxos.server.client_command`, :mod:`~pyxos.server.multi`). Writes go through the log
and reads wait for a read index (:mod:`~pyxos.server.log_calls`), and both are answered
strictly in the order the client sent them; see :mod:`pyxos.server.redis_server` for the
whole picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Sequence
from typing import cast

from pyxos.kv import Classification, CommandKind, classify
from pyxos.kv.commands import string2ll
from pyxos.resp.requests import ProtocolError, RequestParser
from pyxos.server.acl_check import permissions
from pyxos.server.acl_commands import AclConnectionCommands
from pyxos.server.blocking import BLOCKING, BlockingCommands
from pyxos.server.client_command import ClientCommands
from pyxos.server.connection_base import NOAUTH, Reply_, ServerPort, error
from pyxos.server.local_commands import LocalCommands
from pyxos.server.log_calls import LogCalls
from pyxos.server.multi import MultiCommands
from pyxos.server.paxos_commands import PaxosCommands

__all__ = ["Connection"]

log = logging.getLogger("pyxos.server")


class Connection(
    asyncio.Protocol,
    LogCalls,  # first: it implements what the mixins after it declare (submit, propose)
    LocalCommands,
    ClientCommands,
    MultiCommands,
    BlockingCommands,
    AclConnectionCommands,
    PaxosCommands,
):
    """One client, as a protocol object: callbacks instead of a task per connection.

    Commands are dispatched as their bytes arrive and replies leave strictly in request
    order: ``_pending`` holds each reply (bytes, or a future that will bring them) and
    ``_flush`` writes every finished head in one ``write``. A read never overtakes the
    writes sent before it on this connection, nor a write the reads before it: commands of
    the other kind wait in ``_held`` until the current run is answered.
    """

    def __init__(self, server: ServerPort) -> None:
        self.server = server
        self.node = server.node
        self.id = 0
        self.protocol = 2
        self.db = 0
        self.name = b""
        acl = server.kv.acl
        self.user = b"default"
        self.perms = permissions(acl, self.user)
        self.authenticated = not acl.default_requires_auth()
        limits = server.limits
        self.parser = RequestParser(
            max_bulk_len=limits.max_bulk_len,
            max_args=limits.max_args,
            require_auth=not self.authenticated,
        )
        self.closing = False
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()  # cached: each lookup costs a getpid call
        self.created = self.last_active = self.loop.time()
        self.last_spec = None
        self.reply_off = self.quiet = self.no_evict = False
        self.skip_replies = 0
        self.multi = None
        self.multi_error = False
        self.watch_id = 0
        self.watch_pending = []
        self._pending: deque[bytes | asyncio.Future[bytes]] = deque()
        self._held: deque[list[bytes]] = deque()
        self._run_kind: CommandKind | None = CommandKind.LOCAL
        """The kind of the commands in flight; None while an AUTH is: nothing overtakes it."""
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
        if server.client_count >= server.limits.max_clients:
            self.node.metrics.client_errors.labels("maxclients").inc()
            tcp.write(b"-ERR max number of clients reached\r\n")
            tcp.close()
            self.closing = True
            return
        self.id = server.add_connection(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.remove_connection(self)
        self._held.clear()
        if self.watch_id:
            self.drop_watch()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_after_reply(self) -> None:
        """CLIENT KILL: close once what was already answered has been written."""
        self.closing = True
        self._held.clear()
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.closing or self._final_error is not None:
            return
        self.last_active = self.loop.time()
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
        if self.multi is not None and self.queues(argv[0].lower()):
            kind = CommandKind.LOCAL  # answered +QUEUED at once
        if (kind is not self._run_kind and self._run_open) or (
            self.server.paused_until and self.server.holds(kind)
        ):
            self._held.append(argv)
            return
        self._run_kind = kind
        try:
            reply = self._handle(argv, known=None if is_rid else known)
        except Exception as exc:  # a bug must cost one reply, never the connection
            log.exception("command failed")
            reply = error(f"ERR internal error: {exc!r}")
        if self.quiet:  # CLIENT REPLY OFF or SKIP: run the command, drop its reply
            drop = self.reply_off or self.skip_replies > 0
            if self.skip_replies:
                self.skip_replies -= 1
            self.quiet = self.reply_off or self.skip_replies > 0
            if drop:
                self._drop(reply)
                return
        if isinstance(reply, bytes):
            self._pending.append(reply)
            return
        future = reply if isinstance(reply, asyncio.Future) else asyncio.ensure_future(reply)
        if argv and argv[0].lower() in (b"auth", b"hello"):
            self._run_kind = None  # the user changes when it is done: hold what follows
        self._run_open += 1
        self._pending.append(future)
        future.add_done_callback(self._on_done)
        self._update_reading()

    def _drop(self, reply: Reply_) -> None:
        """Let a reply that must not be sent finish, keeping the run count right."""
        if not isinstance(reply, bytes):
            future = reply if isinstance(reply, asyncio.Future) else asyncio.ensure_future(reply)
            self._run_open += 1
            future.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[bytes]) -> None:
        self._run_open -= 1
        if self._held or self.closing or self._final_error is not None:
            self.resume_held()
            return
        # The common case: nothing held. Write only when the head of the queue is ready:
        # the futures of one applied batch are all done before the first of these
        # callbacks runs, so the first one writes every reply and the others find nothing
        # to do (rather than one full flush per reply of a pipeline).
        pending = self._pending
        if pending:
            head = pending[0]
            if isinstance(head, bytes) or head.done():
                self._flush()

    def resume_held(self) -> None:
        """Dispatch held commands that may run now (a run finished, or a pause ended)."""
        while self._held and not self._run_open and not self.closing:
            argv = self._held[0]
            if self.server.paused_until and self.server.holds(classify(argv).kind):
                break
            self._held.popleft()
            self._dispatch(argv)
        self._finish_if_done()
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        out: list[bytes] = []
        while pending:
            head = pending[0]
            if isinstance(head, bytes):
                reply = head
            elif head.done():
                reply = self._reply_bytes(head)
            else:
                break
            if reply[0] == 45:  # '-': an error reply
                self.server.stats.count_error(reply)
            out.append(reply)
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
    ) -> Reply_:
        metrics = self.node.metrics
        name = argv[0].lower() if argv else b""
        if (
            not self.authenticated
            and name not in (b"auth", b"hello", b"quit")
            and self.server.kv.acl.default_requires_auth()
        ):
            metrics.client_errors.labels("noauth").inc()
            return NOAUTH
        if name == b"rid" and client == 0:
            return self._with_session(argv)
        kind, spec, err = known if known is not None else classify(argv)
        perms = self.perms
        if perms is not None and spec is not None and err is None:
            denied = perms.check(spec.name, argv)
            if denied is not None:
                metrics.client_errors.labels("noperm").inc()
                if self.multi is not None and self.queues(name):
                    self.multi_error = True
                return denied
        if self.multi is not None and self.queues(name):
            if spec is not None and err is not None:
                self._count(self.server.stats.rejected, spec.name)
            return self.queue(argv, Classification(kind, spec, err))
        if err is not None:
            metrics.client_errors.labels("invalid").inc()
            if spec is not None:
                self._count(self.server.stats.rejected, spec.name)
            if name == b"exec":
                return self.exec_rejected(err)
            return err
        assert spec is not None
        self.last_spec = spec
        calls = self.server.stats.calls
        calls[spec.name] = calls.get(spec.name, 0) + 1
        if kind is CommandKind.WRITE:
            metrics.ops_write.inc()
            if spec.name in BLOCKING:
                return self.propose_blocking(argv, spec)
            return self.propose(argv, client, seq, spec)
        if kind is CommandKind.READ:
            metrics.ops_read.inc()
            return self._read(argv)
        metrics.ops_local.inc()
        if name == b"exec":
            return self.c_exec(client, seq)
        return self.local_reply(name, argv)

    @staticmethod
    def _count(table: dict[str, int], name: str) -> None:
        table[name] = table.get(name, 0) + 1

    def local_reply(self, name: bytes, argv: Sequence[bytes]) -> Reply_:
        if name == b"client":
            return self.c_client(argv[1:])
        if name in (b"multi", b"discard", b"unwatch"):
            handler = getattr(self, "c_" + name.decode())
            reply: Reply_ = handler()
            return reply
        if name == b"watch":
            return self.c_watch(argv)
        method = getattr(self, "c_" + name.decode("ascii", "replace"), None)
        if method is None:
            return error(f"ERR command '{name.decode(errors='replace')}' is not supported")
        local: Reply_ = method(argv)
        return local

    def _with_session(self, argv: Sequence[bytes]) -> Reply_:
        if len(argv) < 4:
            return b"-ERR wrong number of arguments for 'rid' command\r\n"
        client, seq = string2ll(argv[1]), string2ll(argv[2])
        if client is None or seq is None or client <= 0 or seq <= 0:
            return b"-ERR RID needs a positive client id and sequence number\r\n"
        if self.multi is not None and argv[3].lower() != b"exec":
            # The queued commands run inside EXEC's entry: its session is the one that counts.
            self.multi_error = True
            return b"-ERR RID inside MULTI is not supported: send RID <client> <seq> EXEC\r\n"
        return self._handle(argv[3:], client, seq)
