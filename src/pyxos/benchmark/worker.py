"""The load generator's hot path: one worker's RESP connections, bare asyncio protocols.

One worker is one process running one event loop (uvloop when installed) with many
connections. Each connection is an :class:`asyncio.Protocol`, not a stream plus a task per
request: a reply is parsed by ``hiredis`` inside ``data_received`` and, in the closed loop,
the replacement request goes out from the same callback, batched with the others that
completed in that read into one ``write``. No futures, no tasks, no per-request coroutine:
that is what keeps the generator's cost per operation at a few microseconds, so that on a
two-core machine it is not what limits the numbers (``pyxos bench`` reports how much CPU it
used, and warns when a worker was busy more than 90% of the window).

Two modes:

- **closed loop** (default): every connection keeps ``pipeline`` requests in flight and
  sends a new one as each reply arrives; throughput is whatever the server sustains.
- **open loop** (``rate > 0``): requests are due at a fixed total rate whatever the server
  does; each is timed from the moment it was *due*, not from when a connection was free to
  send it, so queueing at saturation shows up in the latencies (no coordinated omission).
  A connection holds at most ``pipeline`` requests in flight; requests that are due while
  every connection is full wait (``backlog`` counts those never sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis

from pyxos.benchmark.plan import (
    GET_REQUEST,
    PHASE_DONE,
    PHASE_DRAINING,
    PHASE_MEASURING,
    PHASE_READY,
    PHASE_STARTING,
    PHASE_WARMUP,
    WRITE_HEADS,
    WorkerPlan,
    encode,
    make_value,
)
from pyxos.benchmark.stats import GET, SET

__all__ = ["Worker"]


class _Conn(asyncio.Protocol):
    """One client connection with up to ``pipeline`` requests in flight."""

    def __init__(self, worker: Worker, endpoint_index: int) -> None:
        self.w = worker
        self.endpoint_index = endpoint_index
        self.transport: asyncio.Transport | None = None
        self.parser = hiredis.Reader()
        self.pending: deque[tuple[int, int]] = deque()
        self.ready: asyncio.Future[None] = worker.loop.create_future()
        self.auth_pending = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only look like one.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        password = self.w.plan.password
        if password is not None:
            self.auth_pending = 1
            self.transport.write(encode(b"AUTH", password.encode()))
        elif not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        parser.feed(data)
        if self.auth_pending:
            reply = parser.gets()
            if reply is False:
                return
            self.auth_pending = 0
            if isinstance(reply, hiredis.ReplyError):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"AUTH failed: {reply}"))
                return
            if not self.ready.done():
                self.ready.set_result(None)
        w = self.w
        now = time.perf_counter_ns()
        pending = self.pending
        gets = parser.gets
        reply = gets()
        done = 0
        if w.recording:
            lat = w.latencies
            while reply is not False:
                sent, op = pending.popleft()
                if isinstance(reply, hiredis.ReplyError):
                    w.error(op, reply)
                else:
                    lat[op].append(now - sent)
                    done += 1
                reply = gets()
            w.completed += done
        else:
            while reply is not False:
                pending.popleft()
                done += 1
                reply = gets()
        if w.running:
            if w.closed_loop:
                self.send(w.plan.pipeline - len(pending))
        elif not pending:
            w.conn_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        w = self.w
        self.transport = None
        lost = len(self.pending)
        if w.recording and lost:
            w.errors[SET] += lost
            w.error_samples.add(f"connection lost with {lost} requests in flight: {exc}")
        self.pending.clear()
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("connection closed"))
        if w.running:
            w.reconnect_later(self)
        else:
            w.conn_idle()

    # -- sending

    def send(self, n: int) -> None:
        """Send ``n`` new requests timed from now (closed loop)."""
        if n > 0:
            self.send_due([time.perf_counter_ns()] * n)

    def send_due(self, due_times: list[int]) -> None:
        """Send one request per due time (open loop)."""
        transport = self.transport
        if transport is None:
            return
        w = self.w
        parts: list[bytes] = []
        pending = self.pending
        rand = w.rand
        keys, get_fraction, tail = w.plan.keys, w.plan.get_fraction, w.value_tail
        write_head = w.write_head
        for due in due_times:
            k = int(rand() * keys)
            if get_fraction and rand() < get_fraction:
                parts.append(GET_REQUEST % k)
                pending.append((due, GET))
            else:
                parts.append(write_head % k)
                parts.append(tail)
                pending.append((due, SET))
        transport.write(b"".join(parts))


class Worker:
    """One worker's connections, its counters and latencies, and the phases of its run."""

    def __init__(self, plan: WorkerPlan, report: Callable[[int, int, int], None] | None) -> None:
        self.plan = plan
        self.report = report
        self.loop = asyncio.get_running_loop()
        self.rand = random.Random(plan.seed).random
        self.value_tail = b"$%d\r\n%s\r\n" % (plan.value_size, make_value(plan.value_size))
        self.write_head = WRITE_HEADS[plan.write]
        self.closed_loop = plan.rate <= 0
        self.running = False
        self.recording = False
        self.completed = 0
        self.latencies: tuple[array[int], array[int]] = (array("q"), array("q"))
        self.errors = [0, 0]
        self.error_samples: set[str] = set()
        self.reconnects = 0
        self.conns: list[_Conn] = []
        self.phase = PHASE_STARTING
        self.timeline: list[int] = []
        self.window_start = 0
        self._idle: asyncio.Event = asyncio.Event()
        self.backlog = 0

    def error(self, op: int, reply: Exception) -> None:
        self.errors[op] += 1
        if len(self.error_samples) < 5:
            self.error_samples.add(str(reply)[:200])

    def conn_idle(self) -> None:
        if all(not c.pending or c.transport is None for c in self.conns):
            self._idle.set()

    async def _open(self, global_index: int) -> _Conn:
        endpoints = self.plan.endpoints
        endpoint_index = global_index % len(endpoints)
        host, port = endpoints[endpoint_index]
        _, conn = await asyncio.wait_for(
            self.loop.create_connection(lambda: _Conn(self, endpoint_index), host, port),
            self.plan.timeout,
        )
        await asyncio.wait_for(conn.ready, self.plan.timeout)
        return conn

    def reconnect_later(self, old: _Conn) -> None:
        """A connection dropped mid-run: dial the next endpoint after a short pause."""
        self.reconnects += 1

        async def again() -> None:
            await asyncio.sleep(0.1)
            if not self.running:
                return
            try:
                new = await self._open(old.endpoint_index + 1)
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.error_samples.add(f"reconnect failed: {exc}")
                self.reconnect_later(old)
                return
            self.conns[self.conns.index(old)] = new
            if self.closed_loop and self.running:
                new.send(self.plan.pipeline)

        self.loop.create_task(again())

    def _publish(self) -> None:
        if self.report is not None:
            self.report(self.phase, self.completed, sum(self.errors))

    async def run(
        self, start_at_ns: Callable[[], int], stop_requested: Callable[[], bool]
    ) -> dict[str, Any]:
        plan = self.plan
        self._publish()
        conns = await asyncio.gather(
            *(self._open(plan.first_connection + i) for i in range(plan.connections))
        )
        self.conns = list(conns)
        self.phase = PHASE_READY
        self._publish()
        start = start_at_ns()
        while start == 0:
            await asyncio.sleep(0.005)
            start = start_at_ns()
        await asyncio.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))

        t0 = time.perf_counter_ns()
        measure_from = t0 + int(plan.warmup * 1e9)
        measure_to = measure_from + int(plan.duration * 1e9)
        self.running = True
        self.phase = PHASE_WARMUP if plan.warmup > 0 else PHASE_MEASURING
        cpu0 = 0.0
        if plan.warmup <= 0:
            self.recording = True
            self.window_start = time.perf_counter_ns()
            cpu0 = time.process_time()
        ticker = self.loop.create_task(self._tick_progress())
        opener: asyncio.Task[None] | None = None
        if self.closed_loop:
            for c in self.conns:
                c.send(plan.pipeline)
        else:
            opener = self.loop.create_task(self._open_loop(t0, measure_to))
        if plan.warmup > 0:
            await self._sleep_until(measure_from, stop_requested)
            self.completed = 0
            self.window_start = time.perf_counter_ns()
            self.recording = True
            self.phase = PHASE_MEASURING
            cpu0 = time.process_time()
        window_start = self.window_start
        window_start_unix = time.time() - (time.perf_counter_ns() - window_start) / 1e9
        await self._sleep_until(measure_to, stop_requested)
        self.recording = False
        self.running = False
        window = (time.perf_counter_ns() - window_start) / 1e9
        cpu = time.process_time() - cpu0
        self.phase = PHASE_DRAINING
        self._publish()
        if opener is not None:
            opener.cancel()
        self.conn_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), min(plan.timeout, 5.0))
        unfinished = sum(len(c.pending) for c in self.conns)
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()
        ticker.cancel()
        self.phase = PHASE_DONE
        self._publish()
        return {
            "latencies": self.latencies,
            "errors": self.errors,
            "error_samples": sorted(self.error_samples),
            "unfinished": unfinished,
            "backlog": self.backlog,
            "reconnects": self.reconnects,
            "timeline": self.timeline,
            "window_s": window,
            "window_start_unix": window_start_unix,
            "cpu_s": cpu,
        }

    @staticmethod
    async def _sleep_until(deadline_ns: int, stop_requested: Callable[[], bool]) -> None:
        """Sleep until ``deadline_ns`` (perf counter) or until a stop is requested."""
        while not stop_requested():
            remaining = (deadline_ns - time.perf_counter_ns()) / 1e9
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.05, remaining))

    async def _tick_progress(self) -> None:
        """Publish progress every 0.1 s and note each second's completions."""
        counted = 0
        while True:
            await asyncio.sleep(0.1)
            self._publish()
            if not self.recording:
                continue
            elapsed = time.perf_counter_ns() - self.window_start
            while (len(self.timeline) + 1) * 1_000_000_000 <= elapsed:
                self.timeline.append(self.completed - counted)
                counted = self.completed

    async def _open_loop(self, t0: int, until: int) -> None:
        """Release requests at ``rate`` ops/s, timed from when each was due."""
        interval = 1e9 / self.plan.rate
        cap = max(1, self.plan.pipeline)
        conns = self.conns
        issued = 0
        rr = 0
        while self.running:
            now = time.perf_counter_ns()
            due = int((min(now, until) - t0) / interval)
            batches: dict[int, list[int]] = {}
            tries = 0
            while issued < due and tries < len(conns):
                c = conns[rr]
                rr = (rr + 1) % len(conns)
                room = cap - len(c.pending) - len(batches.get(id(c), ()))
                if room <= 0 or c.transport is None:
                    tries += 1
                    continue
                tries = 0
                batch = batches.setdefault(id(c), [])
                take = min(room, due - issued, max(1, (due - issued) // len(conns) + 1))
                batch.extend(t0 + int((issued + j) * interval) for j in range(take))
                issued += take
            for c in conns:
                times = batches.get(id(c))
                if times:
                    c.send_due(times)
            self.backlog = due - issued
            await asyncio.sleep(0.001)
