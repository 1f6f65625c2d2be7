"""Clients that record what they saw: the history a linearizability checker judges.

Each worker runs one operation at a time on a small set of keys and records an ``invoke``
event, then ``ok`` (with the result), ``fail`` (the operation definitely did not take
effect) or ``info`` (unknown: it may take effect at any time, or never). After an
``info`` the worker continues under a new process number, because its old operation may
still be in flight. Every written value is unique, so a lost or resurrected write shows.

Keys rotate: every ``rotate`` seconds the workers move to a fresh set of keys, as Jepsen's
independent checker does, so that each key's history stays short enough for the
linearizability search however long the run.

Besides the register operations, workers add unique keys (``add``) that must all be
present at the end: the plain count of acknowledged writes lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import hiredis

from pyxos.check.history import Event
from pyxos.resp.requests import encode_command

READ_TIMEOUT = 1.0
WRITE_TIMEOUT = 2.0


@dataclass(slots=True)
class Recorder:
    """The shared history, plus per-second counts for the timeline."""

    events: list[Event] = field(default_factory=list)
    completions: list[tuple[float, str, float]] = field(default_factory=list)
    """``(monotonic time, type, latency)`` of every completion."""
    added: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def record(self, process: int, etype: str, f: str, key: str, value: Any) -> None:
        self.events.append(Event(process, etype, f, key, value, time.time_ns()))  # type: ignore[arg-type]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = hiredis.Reader()

    async def call(self, argv: list[bytes], timeout: float) -> Any:
        self.writer.write(encode_command(argv))
        async with asyncio.timeout(timeout):
            while True:
                reply = self.parser.gets()
                if reply is not False:
                    return reply
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("connection closed")
                self.parser.feed(data)

    def close(self) -> None:
        self.writer.close()


class _Outcome(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Worker:
    """One client. ``process`` changes after every unknown outcome."""

    def __init__(
        self,
        index: int,
        workers: int,
        endpoints: list[tuple[str, int]],
        keys: list[str],
        recorder: Recorder,
        rng: random.Random,
        think: float,
        rotate: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.index = index
        self.process = index
        self.workers = workers
        self.endpoints = endpoints
        self.keys = keys
        self.recorder = recorder
        self.rng = rng
        self.think = think
        self.rotate = rotate
        self.tls = tls
        """Client TLS: the endpoints are TLS ports, and this is how to verify them."""
        self.counter = 0
        self.node = index % len(endpoints)
        self.conn: _Conn | None = None
        self.seen: dict[str, str | None] = {}

    def unique(self) -> str:
        self.counter += 1
        return str(self.index * 10_000_000 + self.counter)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            if self.think:
                await asyncio.sleep(self.rng.uniform(0, 2 * self.think))
        await self.close()

    async def close(self) -> None:
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    def generation(self) -> int:
        return int((time.monotonic() - self.recorder.started) / self.rotate)

    async def step(self) -> None:
        rng = self.rng
        key = f"{rng.choice(self.keys)}:g{self.generation()}"
        roll = rng.random()
        if roll < 0.40:
            await self.op("get", key, None, [b"GET", key.encode()])
        elif roll < 0.65:
            value = self.unique()
            await self.op("set", key, value, [b"SET", key.encode(), value.encode()])
        elif roll < 0.75:
            await self.op("incr", key, 1, [b"INCR", key.encode()])
        elif roll < 0.90:
            expected = self.seen.get(key)
            if expected is None:
                expected = str(rng.randint(0, 3))
            new = self.unique()
            argv = [b"CAS", key.encode(), expected.encode(), new.encode()]
            await self.op("cas", key, [expected, new], argv)
        elif roll < 0.93:
            await self.op("del", key, None, [b"DEL", key.encode()])
        else:
            await self.add()

    async def _connection(self) -> _Conn:
        if self.conn is None:
            host, port = self.endpoints[self.node]
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, ssl=self.tls), 1.0
                )
            except (OSError, TimeoutError) as exc:
                self.node = (self.node + 1) % len(self.endpoints)
                raise _Outcome("fail", f"connect: {exc!r}") from None
            self.conn = _Conn(reader, writer)
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.node = (self.node + 1) % len(self.endpoints)

    async def _call(self, argv: list[bytes], is_write: bool) -> Any:
        conn = await self._connection()
        try:
            reply = await conn.call(argv, WRITE_TIMEOUT if is_write else READ_TIMEOUT)
        except (OSError, TimeoutError, hiredis.ProtocolError) as exc:
            self._drop_connection()
            raise _Outcome("info" if is_write else "fail", repr(exc)) from None
        if isinstance(reply, hiredis.ReplyError):
            code = str(reply).split(" ", 1)[0]
            if code in ("TIMEOUT", "NODEFAILED") and is_write:
                self._drop_connection()
                raise _Outcome("info", str(reply))
            if code in ("NOLEADER", "TIMEOUT", "NODEFAILED"):
                self._drop_connection()
            raise _Outcome("fail", str(reply))
        return reply

    async def op(self, f: str, key: str, arg: Any, argv: list[bytes]) -> None:
        rec = self.recorder
        process = self.process
        rec.record(process, "invoke", f, key, arg)
        started = time.monotonic()
        try:
            reply = await self._call(argv, f != "get")
        except _Outcome as outcome:
            rec.record(process, outcome.kind, f, key, None)
            rec.completions.append((time.monotonic(), outcome.kind, time.monotonic() - started))
            if outcome.kind == "info":
                self.process += self.workers  # the old operation may still be in flight
            else:
                await asyncio.sleep(0.02)  # do not spin while a node is down
            return
        value: Any = None
        if f == "get":
            value = reply.decode() if isinstance(reply, bytes) else None
            self.seen[key] = value
        elif f == "incr":
            value = int(reply)
            self.seen[key] = str(value)
        elif f == "cas":
            value = int(reply)
            if value == 1:
                self.seen[key] = arg[1]
        elif f == "set":
            self.seen[key] = arg
        rec.record(process, "ok", f, key, value)
        rec.completions.append((time.monotonic(), "ok", time.monotonic() - started))

    async def add(self) -> None:
        """Write a key nobody else writes; acknowledged ones must all survive."""
        key = f"add:{self.index}:{self.unique()}"
        try:
            await self._call([b"SET", key.encode(), b"1"], True)
        except _Outcome:
            return
        self.recorder.added[key] = "1"
