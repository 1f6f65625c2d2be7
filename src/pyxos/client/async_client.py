"""The asyncio client: one pipelined connection shared by tasks, each write its own session."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis

from pyxos.client.base import ClientBase, new_client_id, to_bytes
from pyxos.client.discovery import INFO_PAXOS, Endpoint, info_fields, pick_leader
from pyxos.client.errors import ResponseError, gave_up, retry_reason
from pyxos.kv import CommandKind, classify
from pyxos.resp.requests import encode_command

__all__ = ["AsyncClient"]


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


class AsyncClient(ClientBase):
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
        args = [to_bytes(a) for a in argv]
        kind = classify(args).kind
        session: tuple[int, int] | None = None
        if kind is CommandKind.WRITE:
            # A session runs one write at a time, so concurrent writes take different ones.
            client_id, seq = (
                self._free_sessions.pop() if self._free_sessions else (new_client_id(), 0)
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
                last, maybe = retry_reason(reply)
                unknown = unknown or maybe
                await self._next_endpoint(attempt)
                continue
            return reply
        raise gave_up(unknown, self.attempts, last)

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
                infos[i] = info_fields(await asyncio.wait_for(conn.request(INFO_PAXOS), 1.0))
            except (OSError, TimeoutError):
                pass
            finally:
                conn.close()

        await asyncio.gather(*(ask(i, e) for i, e in enumerate(self.endpoints)))
        leader = pick_leader(infos)
        if leader is not None:
            self._current = leader

    async def _next_endpoint(self, attempt: int) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        delay = self._rotate(attempt)
        if delay:
            await asyncio.sleep(delay)

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
