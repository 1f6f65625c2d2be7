"""Histories of a simulated store that is linearizable by construction.

The checker's tests and benchmarks need large histories whose verdict is known. This
module simulates clients driving a single-copy key-value store: every operation takes
effect atomically at one instant strictly between its invocation and its completion, so
the resulting history is linearizable, with as much overlap between clients as one
likes. Operations can also fail (not applied) or end with an unknown outcome (applied
or not, possibly after the client gave up, even after later operations of the same
client), which exercises everything the checker has to handle. A test then corrupts one
result to get a history that is known *not* to be linearizable.

Randomness comes from a seeded ``random.Random`` owned by the call, never the global
generator: the same seed gives the same history.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from pyxos.check.history import Event, EventType
from pyxos.check.models import INT64_MAX, INT64_MIN, parse_redis_int

# Relative frequencies of the operations the simulated clients issue.
_MIX = (("get", 40), ("set", 25), ("incr", 15), ("cas", 15), ("del", 5))


@dataclass
class _Pending:
    """An operation in flight: what was asked, and what the store answered."""

    process: int
    f: str
    key: str
    arg: object
    outcome: EventType = "ok"
    result: object = None
    applied: bool = False
    completion: bool = True


@dataclass
class _Simulation:
    rng: random.Random
    keys: list[str]
    string_rate: float
    store: dict[str, str] = field(default_factory=dict)
    seen: dict[tuple[int, str], object] = field(default_factory=dict)
    next_value: int = 0

    def fresh_value(self) -> object:
        """A value never written before, so that reads identify their write."""
        self.next_value += 1
        if self.rng.random() < self.string_rate:
            return f"s{self.next_value}"
        return self.next_value

    def choose(self, process: int) -> _Pending:
        f = self.rng.choices([m[0] for m in _MIX], weights=[m[1] for m in _MIX])[0]
        key = self.rng.choice(self.keys)
        arg: object = None
        if f == "set":
            arg = self.fresh_value()
        elif f == "incr":
            arg = self.rng.choice([None, 1, 2, 5, -3])
        elif f == "cas":
            last = self.seen.get((process, key))
            expected = last if self.rng.random() < 0.7 else self.rng.choice([None, last])
            arg = [expected, self.fresh_value()]
        return _Pending(process, f, key, arg)

    def apply(self, op: _Pending) -> None:
        """Take effect: change the store and record what a client would read back."""
        op.applied = True
        current = self.store.get(op.key)
        if op.f == "get":
            op.result = current
        elif op.f == "set":
            self.store[op.key] = str(op.arg)
            op.result = "OK"
        elif op.f == "del":
            op.result = int(self.store.pop(op.key, None) is not None)
        elif op.f == "incr":
            number = 0 if current is None else parse_redis_int(current)
            delta = 1 if op.arg is None else op.arg
            assert isinstance(delta, int)
            if number is None or not INT64_MIN <= number + delta <= INT64_MAX:
                op.applied = False  # Redis replies with an error and changes nothing
                if op.outcome == "ok":
                    op.outcome = "fail"
                return
            self.store[op.key] = str(number + delta)
            op.result = number + delta
        elif op.f == "cas":
            assert isinstance(op.arg, list)
            expected, new = op.arg
            if current == (None if expected is None else str(expected)):
                self.store[op.key] = str(new)
                op.result = 1
            else:
                op.result = 0
        if op.outcome == "ok" and op.f != "set":
            value = self.store.get(op.key)
            self.seen[(op.process, op.key)] = value


def simulate_kv_history(
    *,
    ops: int,
    keys: int = 10,
    clients: int = 16,
    seed: int = 0,
    unknown_rate: float = 0.02,
    fail_rate: float = 0.02,
    string_rate: float = 0.1,
    crash_at_end: bool = True,
) -> list[Event]:
    """Simulate ``clients`` clients issuing ``ops`` operations on ``keys`` keys.

    Each operation takes effect at a random instant between its invocation and its
    completion. With probability ``fail_rate`` it fails without effect; with probability
    ``unknown_rate`` its completion is ``info`` and it takes effect half of the time, at a
    random instant after its invocation that may come after the ``info``. A ``string_rate``
    share of written values are non-numeric strings, on which ``incr`` fails. With
    ``crash_at_end``, half of the operations still in flight when the last one is invoked
    never complete. Times are nanoseconds, strictly increasing along the history.
    """
    rng = random.Random(seed)
    sim = _Simulation(rng, [f"k{i}" for i in range(keys)], string_rate)
    events: list[Event] = []
    # (virtual time, tie-breaker, action, operation); actions are processed in time order
    # and stamped with strictly increasing times, so every effect lands strictly between
    # the invocation and the completion that bracket it in the history.
    queue: list[tuple[int, int, str, _Pending | int]] = []
    seq = 0

    def schedule(at: int, action: str, what: _Pending | int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (at, seq, action, what))

    for process in range(clients):
        schedule(rng.randint(0, 50), "start", process)
    invoked = 0
    stamp = 0
    while queue:
        now, _, action, what = heapq.heappop(queue)
        if action == "start":
            assert isinstance(what, int)
            if invoked == ops:
                continue
            invoked += 1
            op = sim.choose(what)
            stamp += 1000
            events.append(Event(op.process, "invoke", op.f, op.key, op.arg, stamp))
            roll = rng.random()
            if roll < fail_rate:
                op.outcome = "fail"
                schedule(now + rng.randint(2, 200), "complete", op)
            elif roll < fail_rate + unknown_rate:
                op.outcome = "info"
                if rng.random() < 0.5:
                    schedule(now + rng.randint(1, 400), "effect", op)
                schedule(now + rng.randint(2, 200), "complete", op)
            else:
                effect = now + rng.randint(1, 100)
                schedule(effect, "effect", op)
                schedule(effect + rng.randint(1, 100), "complete", op)
            if invoked == ops and crash_at_end:
                for _, _, pending_action, pending in queue:
                    if pending_action == "complete" and isinstance(pending, _Pending):
                        pending.completion = rng.random() < 0.5
            continue
        assert isinstance(what, _Pending)
        op = what
        if action == "effect":
            sim.apply(op)
            continue
        # complete
        if op.completion:
            stamp += 1000
            value = op.result if op.outcome == "ok" else None
            events.append(Event(op.process, op.outcome, op.f, op.key, value, stamp))
        schedule(now + rng.randint(0, 50), "start", op.process)
    return events
