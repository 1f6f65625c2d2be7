"""The deadlines of waiting commands and reads: FIFO queues per timeout, not a heap."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pyxos.runtime.errors import UnknownOutcome
from pyxos.runtime.requests import Requests


class _Clock(asyncio.AbstractEventLoop):
    """Only what Requests uses of a loop: futures and a settable time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = 100.0

    def time(self) -> float:
        return self.now

    def create_future(self) -> asyncio.Future[object]:
        return self._loop.create_future()


@pytest.fixture
def clock() -> Iterator[_Clock]:
    loop = asyncio.new_event_loop()
    yield _Clock(loop)
    loop.close()


def test_each_request_fails_at_its_own_deadline_whatever_the_timeouts(clock: _Clock) -> None:
    requests = Requests()
    short = requests.command(1, clock, 1.0)
    clock.now += 0.5
    long = requests.command(2, clock, 5.0)
    read = requests.read(7, clock, 2.0)
    odd = requests.command(3, clock, 0.7004)  # a timeout left over from a retry loop
    requests.expire(clock.now + 0.49)
    assert not short.done()
    requests.expire(101.0)
    assert isinstance(short.exception(), UnknownOutcome)
    assert not odd.done() and not read.done() and not long.done()
    requests.expire(101.21)
    assert isinstance(odd.exception(), UnknownOutcome)
    requests.expire(102.5)
    assert isinstance(read.exception(), UnknownOutcome)
    assert not long.done()
    requests.expire(105.5)
    assert isinstance(long.exception(), UnknownOutcome)
    assert not requests.has_deadlines


def test_answered_requests_are_not_failed_later(clock: _Clock) -> None:
    requests = Requests()
    futures = [requests.command(seq, clock, 5.0) for seq in range(1, 101)]
    for seq in range(1, 101, 2):
        requests.replied(seq, b"+OK\r\n")
    clock.now += 10
    requests.expire(clock.now)
    assert [f.result() for f in futures[::2]] == [b"+OK\r\n"] * 50
    assert all(isinstance(f.exception(), UnknownOutcome) for f in futures[1::2])
    assert not requests.has_deadlines


def test_many_distinct_timeouts_all_expire(clock: _Clock) -> None:
    requests = Requests()
    futures = [requests.command(seq, clock, 1.0 + seq / 1000) for seq in range(1, 301)]
    requests.expire(clock.now + 1.1505)
    done = [f.done() for f in futures]
    assert done == [seq / 1000 <= 0.15 for seq in range(1, 301)]
    requests.expire(clock.now + 2)
    assert all(f.done() for f in futures)
    assert not requests.has_deadlines


def test_a_timeout_used_again_after_its_queue_emptied_still_expires(clock: _Clock) -> None:
    requests = Requests()
    first = requests.command(1, clock, 2.0)
    clock.now += 3
    requests.expire(clock.now)  # empties and drops the 2.0 queue
    assert isinstance(first.exception(), UnknownOutcome) and not requests.has_deadlines
    again = requests.command(2, clock, 2.0)
    assert requests.has_deadlines
    clock.now += 3
    requests.expire(clock.now)
    assert isinstance(again.exception(), UnknownOutcome)
