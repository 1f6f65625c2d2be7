"""What every part of a client connection shares: its state, and the reply helpers.

A connection is assembled from mixins by concern (:mod:`~pyxos.server.local_commands`,
:mod:`~pyxos.server.client_command`, :mod:`~pyxos.server.multi`) over this base, which
declares the state they all read and the two ways a command reaches the replicated state
(:meth:`ConnectionBase.propose` for writes, :meth:`ConnectionBase.submit` for internal
entries such as WATCH registrations).

The connection sees its server as a :class:`ServerPort`, the protocol naming what it asks of
it, rather than as :class:`~pyxos.server.redis_server.RedisServer`: the server builds its
connections, and neither module needs the other to be understood.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pyxos.kv.commands import CommandSpec
from pyxos.resp.replies import Reply, encode
from pyxos.server.port_state import ClientPort

if TYPE_CHECKING:
    from pyxos.kv import CommandKind
    from pyxos.resp.requests import RequestParser
    from pyxos.runtime.node import Node
    from pyxos.server.acl_check import Permissions
    from pyxos.server.redis_config import RedisConfig

Reply_ = bytes | asyncio.Future[bytes] | Coroutine[Any, Any, bytes]
"""A reply ready now, one that a future will bring, or one a coroutine will compute."""

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
EMPTY_ARRAY = b"*0\r\n"
SYNTAX = b"-ERR syntax error\r\n"


def now_ms() -> int:
    """This node's wall clock in ms since the epoch: the time stamp of the commands it takes
    (the state machine's clock is the largest stamp applied, see :mod:`pyxos.kv.keyspace`)."""
    return time.time_ns() // 1_000_000


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def error(text: str) -> bytes:
    """An error reply line; CR and LF in ``text`` become spaces, as in Redis."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\r\n"


def arg_text(arg: bytes) -> str:
    return arg.decode("utf-8", "surrogateescape")


class ServerPort(ClientPort, Protocol):
    """What a client connection asks of the client port that accepted it."""

    aclfile: str | None
    config: RedisConfig
    paused_until: float
    """When CLIENT PAUSE ends (``loop.time()``), 0 when no pause is in effect."""

    def connections(self) -> Iterator[ConnectionBase]:
        """Open client connections, oldest first."""
        ...

    def add_connection(self, conn: ConnectionBase) -> int:
        """Count a newly accepted connection among the open ones; its client id."""
        ...

    def remove_connection(self, conn: ConnectionBase) -> None:
        """Forget a closed connection."""
        ...

    def pause(self, seconds: float, writes_only: bool) -> None:
        """CLIENT PAUSE: hold commands (or only writes) for ``seconds``."""
        ...

    def unpause(self) -> None:
        """CLIENT UNPAUSE: run what was held."""
        ...

    def holds(self, kind: CommandKind) -> bool:
        """Whether CLIENT PAUSE holds a command of this kind now."""
        ...


class ConnectionBase:
    """State of one client connection (see :class:`pyxos.server.connection.Connection`)."""

    server: ServerPort
    node: Node
    parser: RequestParser
    loop: asyncio.AbstractEventLoop
    id: int
    protocol: int
    db: int
    name: bytes
    authenticated: bool
    user: bytes
    """The ACL user this connection runs as (``default`` until AUTH)."""
    perms: Permissions | None
    """That user's compiled permissions; None when it may run everything on every key."""
    closing: bool
    transport: asyncio.Transport | None
    created: float
    """``loop.time()`` when the connection was accepted."""
    last_active: float
    """``loop.time()`` when its last bytes arrived."""
    last_spec: CommandSpec | None
    reply_off: bool
    """CLIENT REPLY OFF: no replies at all until CLIENT REPLY ON."""
    skip_replies: int
    """Replies still to drop because of CLIENT REPLY SKIP (this one and the next)."""
    quiet: bool
    """Either of the above is in effect (one test on the hot path)."""
    no_evict: bool
    multi: list[list[bytes]] | None
    """Commands queued since MULTI, or None outside a transaction."""
    multi_error: bool
    watch_id: int
    """This connection's WATCH registration in the replicated state, 0 for none."""
    watch_pending: list[asyncio.Future[bytes]]

    def encode(self, value: Reply) -> bytes:
        return encode(value, self.protocol)

    def propose(
        self, argv: Sequence[bytes], client: int, seq: int, spec: CommandSpec
    ) -> Reply_:  # implemented in pyxos.server.log_calls
        raise NotImplementedError

    def submit(self, payload: bytes) -> asyncio.Future[bytes]:
        """Put an internal entry (encoded request) through the log; the future brings its
        RESP2 reply, or a RESP error when it could not be applied."""
        raise NotImplementedError

    def error_reply(self, exc: BaseException) -> bytes:
        raise NotImplementedError

    def drop_watch(self) -> None:
        """Forget this connection's WATCH (see :mod:`pyxos.server.multi`)."""
        raise NotImplementedError

    def after_read_index(self, answer: Callable[[], Reply_]) -> Reply_:
        """``answer()`` once this node has applied everything acknowledged before now."""
        raise NotImplementedError

    def login(self, user: bytes) -> None:
        """Run as ``user`` from now on (see :mod:`pyxos.server.acl_commands`)."""
        raise NotImplementedError

    def logout(self) -> None:
        """Back to the ``default`` user, as a new connection is."""
        raise NotImplementedError

    def close_after_reply(self) -> None:
        """Close once what was already answered has been written (CLIENT KILL)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close now, dropping what is unanswered (the server is shutting down)."""
        raise NotImplementedError

    def resume_held(self) -> None:
        """Run the commands CLIENT PAUSE held (it has ended)."""
        raise NotImplementedError
