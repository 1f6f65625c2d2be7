"""The native Python clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both speak RESP to any node and add what a generic Redis client cannot:

- leader discovery: they learn which endpoint leads (``INFO paxos``) and send there,
  saving the follower-to-leader hop, and move on when it fails;
- exactly-once writes: every write runs inside a session, ``RID <client> <seq> ...``; a
  retry after a timeout or a lost connection reuses the same ``seq``, so the cluster
  applies it at most once and returns the original reply;
- honest errors: :class:`UnknownOutcomeError` when the write may or may not have been
  applied (every retry timed out), :class:`UnavailableError` when it was definitely not,
  :class:`ResponseError` for a command the server refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import hiredis

from pyxos.kv import CommandKind, classify
from pyxos.resp.requests import encode_command


class ClientError(Exception):
    """Base class of the client's errors."""


class ResponseError(ClientError):
    """The server answered with an error (a definite outcome: nothing was applied)."""


class UnavailableError(ClientError):
    """No node could take the request; it was definitely not applied."""


class UnknownOutcomeError(ClientError):
    """The request may or may not have been applied; retrying it later is safe."""


Endpoint = tuple[str, int]
_RETRYABLE = ("NOLEADER", "TIMEOUT", "NODEFAILED")
_UNKNOWN = ("TIMEOUT",)


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


def _new_client_id() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1 or 1


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        raise TypeError("booleans are not Redis values")
    if isinstance(value, int | float | str):
        return str(value).encode()
    raise TypeError(f"cannot send {type(value).__name__} as a Redis value")


def _info_fields(reply: Any) -> dict[str, str]:
    if not isinstance(reply, bytes):
        return {}
    fields = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


_INFO_PAXOS = encode_command([b"INFO", b"paxos"])


def _pick_leader(infos: dict[int, dict[str, str]]) -> int | None:
    """The index of the endpoint whose node the others name as leader, if any."""
    by_node = {f.get("node_id"): i for i, f in infos.items() if f.get("node_id")}
    for fields in infos.values():
        leader = fields.get("leader_id")
        if leader and leader in by_node:
            return by_node[leader]
    return None


def _retry_reason(reply: hiredis.ReplyError) -> tuple[ResponseError, bool]:
    """For an error reply worth retrying elsewhere: the error and whether the outcome is
    unknown. Raises :class:`ResponseError` for a definite refusal."""
    text = str(reply)
    code = text.split(" ", 1)[0]
    if code not in _RETRYABLE:
        raise ResponseError(text)
    return ResponseError(text), code in _UNKNOWN


def _gave_up(unknown: bool, attempts: int, last: Exception | None) -> ClientError:
    if unknown:
        return UnknownOutcomeError(f"outcome unknown after {attempts} attempts: {last}")
    return UnavailableError(f"no node took the request: {last}")


class _Commands:
    """What both clients share: settings, and the typed helpers; ``execute`` does the work."""

    def __init__(
        self,
        endpoints: str | Sequence[str | Endpoint],
        *,
        password: str | None = None,
        timeout: float = 5.0,
        attempts: int = 6,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.password = password
        self.timeout = timeout
        self.attempts = attempts
        self._current = 0
        self._discovered = False
        self._open_state()

    def _open_state(self) -> None:  # pragma: no cover - overridden
        """Set up the connection state of this kind of client (none yet: lazily opened)."""
        raise NotImplementedError

    def execute(self, *argv: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def get(self, key: str | bytes) -> Any:
        return self.execute("GET", key)

    def set(self, key: str | bytes, value: Any) -> Any:
        return self.execute("SET", key, value)

    def delete(self, *keys: str | bytes) -> Any:
        return self.execute("DEL", *keys)

    def incr(self, key: str | bytes, by: int = 1) -> Any:
        return self.execute("INCRBY", key, by)

    def cas(self, key: str | bytes, expected: Any, new: Any) -> Any:
        return self.execute("CAS", key, expected, new)

    def mget(self, *keys: str | bytes) -> Any:
        return self.execute("MGET", *keys)

    def exists(self, *keys: str | bytes) -> Any:
        return self.execute("EXISTS", *keys)


class Client(_Commands):
    """A blocking client. Not thread-safe: use one per thread."""

    def _open_state(self) -> None:
        self.client_id = _new_client_id()
        self._seq = 0
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, *argv: Any) -> Any:
        """Run one command; writes are exactly-once across retries."""
        args = [_to_bytes(a) for a in argv]
        kind = classify(args).kind
        if kind is CommandKind.WRITE:
            self._seq += 1
            args = [b"RID", b"%d" % self.client_id, b"%d" % self._seq, *args]
        unknown = False
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                reply = self._roundtrip(encode_command(args))
            except ConnectionRefusedError as exc:
                last = exc  # never sent: no doubt about the outcome
                self._next_endpoint(attempt)
                continue
            except (OSError, hiredis.ProtocolError) as exc:
                self.close()
                unknown = unknown or kind is CommandKind.WRITE
                last = exc
                self._next_endpoint(attempt)
                continue
            if isinstance(reply, hiredis.ReplyError):
                last, maybe = _retry_reason(reply)
                unknown = unknown or maybe
                self._next_endpoint(attempt)
                continue
            return reply
        raise _gave_up(unknown, self.attempts, last)

    def _discover(self) -> None:
        """Point at the leader's endpoint, if the nodes agree on one."""
        infos: dict[int, dict[str, str]] = {}
        for i, endpoint in enumerate(self.endpoints):
            try:
                with socket.create_connection(endpoint, timeout=min(self.timeout, 1.0)) as sock:
                    reader = hiredis.Reader()
                    if self.password is not None:
                        sock.sendall(encode_command([b"AUTH", self.password.encode()]))
                    sock.sendall(_INFO_PAXOS)
                    replies: list[Any] = []
                    want = 2 if self.password is not None else 1
                    while len(replies) < want:
                        data = sock.recv(65536)
                        if not data:
                            break
                        reader.feed(data)
                        while (reply := reader.gets()) is not False:
                            replies.append(reply)
                    if replies:
                        infos[i] = _info_fields(replies[-1])
            except (OSError, hiredis.ProtocolError):
                continue
        leader = _pick_leader(infos)
        if leader is not None:
            self._current = leader

    def _next_endpoint(self, attempt: int) -> None:
        self.close()
        self._current = (self._current + 1) % len(self.endpoints)
        self._discovered = False
        if attempt >= len(self.endpoints) - 1:
            time.sleep(min(0.05 * 2 ** (attempt - len(self.endpoints) + 1), 1.0))

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if not self._discovered:
                self._discovered = True
                self._discover()
            sock = socket.create_connection(self.endpoints[self._current], timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._reader = hiredis.Reader()
            if self.password is not None:
                reply = self._roundtrip(encode_command([b"AUTH", self.password.encode()]))
                if isinstance(reply, hiredis.ReplyError):
                    raise ResponseError(str(reply))
        return self._sock

    def _roundtrip(self, request: bytes) -> Any:
        sock = self._connect()
        sock.sendall(request)
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._reader.feed(data)


class _AsyncConn:
    """One pipelined connection: requests go out as they come, replies are matched FIFO."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = hiredis.Reader()
        self.waiting: list[asyncio.Future[Any]] = []
        self.task = asyncio.create_task(self._read_loop())
        self.closed = False

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not False:
                    future = self.waiting.pop(0)
                    if not future.done():
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError, IndexError):
            pass
        finally:
            self.close()

    def request(self, data: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.closed or self.writer.transport.is_closing():
            self.close()
            future.set_exception(ConnectionError("connection closed"))
            return future
        self.waiting.append(future)
        self.writer.write(data)
        return future

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        for future in self.waiting:
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        self.waiting.clear()


class AsyncClient(_Commands):
    """An asyncio client; safe to share between tasks (each write gets its own session)."""

    def _open_state(self) -> None:
        self._conn: _AsyncConn | None = None
        self._connecting: asyncio.Lock | None = None
        self._free_sessions: list[tuple[int, int]] = []

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.writer.wait_closed()
            self._conn = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, *argv: Any) -> Any:
        args = [_to_bytes(a) for a in argv]
        kind = classify(args).kind
        session: tuple[int, int] | None = None
        if kind is CommandKind.WRITE:
            # A session runs one write at a time, so concurrent writes take different ones.
            client_id, seq = (
                self._free_sessions.pop() if self._free_sessions else (_new_client_id(), 0)
            )
            session = (client_id, seq + 1)
            args = [b"RID", b"%d" % client_id, b"%d" % (seq + 1), *args]
        try:
            return await self._execute(encode_command(args), kind is CommandKind.WRITE)
        finally:
            if session is not None:
                self._free_sessions.append(session)

    async def _execute(self, request: bytes, is_write: bool) -> Any:
        unknown = False
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                conn = await self._connect()
            except (OSError, TimeoutError) as exc:
                last = exc  # never sent: no doubt about the outcome
                await self._next_endpoint(attempt)
                continue
            try:
                reply = await asyncio.wait_for(conn.request(request), self.timeout)
            except (OSError, TimeoutError, hiredis.ProtocolError) as exc:
                unknown = unknown or is_write
                last = exc
                await self._next_endpoint(attempt)
                continue
            if isinstance(reply, hiredis.ReplyError):
                last, maybe = _retry_reason(reply)
                unknown = unknown or maybe
                await self._next_endpoint(attempt)
                continue
            return reply
        raise _gave_up(unknown, self.attempts, last)

    async def _discover(self) -> None:
        infos: dict[int, dict[str, str]] = {}

        async def ask(i: int, endpoint: Endpoint) -> None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*endpoint), 1.0)
            except (OSError, TimeoutError):
                return
            conn = _AsyncConn(reader, writer)
            try:
                if self.password is not None:
                    conn.request(encode_command([b"AUTH", self.password.encode()]))
                infos[i] = _info_fields(await asyncio.wait_for(conn.request(_INFO_PAXOS), 1.0))
            except (OSError, TimeoutError):
                pass
            finally:
                conn.close()

        await asyncio.gather(*(ask(i, e) for i, e in enumerate(self.endpoints)))
        leader = _pick_leader(infos)
        if leader is not None:
            self._current = leader

    async def _next_endpoint(self, attempt: int) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._current = (self._current + 1) % len(self.endpoints)
        self._discovered = False
        if attempt >= len(self.endpoints) - 1:
            await asyncio.sleep(min(0.05 * 2 ** (attempt - len(self.endpoints) + 1), 1.0))

    async def _connect(self) -> _AsyncConn:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if not self._discovered:
                self._discovered = True
                await self._discover()
            host, port = self.endpoints[self._current]
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.timeout
            )
            conn = _AsyncConn(reader, writer)
            if self.password is not None:
                reply = await conn.request(encode_command([b"AUTH", self.password.encode()]))
                if isinstance(reply, hiredis.ReplyError):
                    conn.close()
                    raise ResponseError(str(reply))
            self._conn = conn
            return conn
