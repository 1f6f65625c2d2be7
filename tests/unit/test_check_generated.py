"""Large histories with known verdicts: simulated linearizable stores, with and without an
injected anomaly, and sequential executions of a reference implementation."""

from __future__ import annotations

import itertools
import random
import re
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxos.check import Event, build_operations, check_history
from pyxos.check.generate import simulate_kv_history
from pyxos.check.history import EventType


def test_10k_ops_10_keys_16_clients_is_linearizable_and_quick() -> None:
    events = simulate_kv_history(ops=10_000, keys=10, clients=16, seed=7)
    ops = build_operations(events)
    assert sum(1 for e in events if e.type == "invoke") == 10_000
    assert sum(1 for op in ops if not op.known) > 100  # unknown outcomes are exercised
    start = time.perf_counter()
    result = check_history(events, timeout_s=120)
    elapsed = time.perf_counter() - start
    assert result.verdict == "ok", result.explain()
    assert len(result.keys) == 10
    assert elapsed < 60  # about 0.2 s on a laptop; generous so as not to flake in CI


def test_simulated_histories_really_overlap() -> None:
    """Guard for the test above: the simulation must produce concurrency to resolve."""
    ops = [op for op in build_operations(simulate_kv_history(ops=2000, seed=1)) if op.known]
    overlapping = sum(
        1 for a, b in itertools.pairwise(ops) if a.return_ns and b.call_ns < a.return_ns
    )
    assert overlapping > len(ops) // 2


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    keys=st.integers(1, 3),
    clients=st.integers(1, 6),
)
def test_simulated_linearizable_stores_always_pass(seed: int, keys: int, clients: int) -> None:
    events = simulate_kv_history(
        ops=150, keys=keys, clients=clients, seed=seed, unknown_rate=0.1, fail_rate=0.1
    )
    result = check_history(events, timeout_s=60)
    assert result.verdict == "ok", result.explain()


# --- injected anomalies -------------------------------------------------------------------


def corrupt(events: list[Event], index: int, value: object) -> list[Event]:
    bad = list(events)
    bad[index] = replace(events[index], value=value)
    return bad


def ok_reads(events: list[Event]) -> list[int]:
    return [i for i, e in enumerate(events) if e.type == "ok" and e.f == "get"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_read_of_a_value_never_written_is_caught(seed: int) -> None:
    events = simulate_kv_history(ops=3000, keys=10, clients=16, seed=seed)
    rng = random.Random(seed)
    target = rng.choice(ok_reads(events)[100:])
    result = check_history(corrupt(events, target, "never-written"), timeout_s=60)
    assert result.verdict == "violation"
    (violation,) = result.violations
    assert violation.key == events[target].key
    assert any(c.op.result == "never-written" and not c.accepted for c in violation.candidates)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_read_from_the_future_is_caught(seed: int) -> None:
    """A read returns the value of a write invoked only after the read completed."""
    events = simulate_kv_history(ops=3000, keys=10, clients=16, seed=seed)
    ops = build_operations(events)
    reads = [op for op in ops if op.known and op.f == "get" and op.index > 100]
    writes = [op for op in ops if op.f == "set"]
    rng = random.Random(seed)
    for read in rng.sample(reads, len(reads)):
        later = [
            w
            for w in writes
            if w.key == read.key and read.return_ns is not None and w.call_ns > read.return_ns
        ]
        if later:
            break
    target = next(
        i
        for i, e in enumerate(events)
        if e.type == "ok" and e.process == read.process and e.time_ns == read.return_ns
    )
    result = check_history(corrupt(events, target, later[0].arg), timeout_s=60)
    assert result.verdict == "violation"
    assert result.violations[0].key == read.key


@pytest.mark.parametrize("seed", [7, 8])
def test_stale_read_is_caught(seed: int) -> None:
    """A read returns a string value that a later, completed set had overwritten before
    the read was invoked. String values are unique and incr cannot produce them, so
    nothing else could have written it back."""
    events = simulate_kv_history(ops=3000, keys=10, clients=16, seed=seed, string_rate=0.5)
    ops = build_operations(events)
    found = None
    for read in (op for op in ops if op.known and op.f == "get" and op.index > 200):
        sets = [
            op
            for op in ops
            if op.key == read.key
            and op.f == "set"
            and op.known
            and op.return_ns is not None
            and read.call_ns > op.return_ns
        ]
        stale = [
            s
            for s in sets
            if isinstance(s.arg, str)
            and any(t.call_ns > (s.return_ns or 0) and t.arg != s.arg and t is not s for t in sets)
        ]
        if stale and read.result != stale[0].arg:
            found = (read, stale[0].arg)
            break
    assert found is not None
    read, value = found
    target = next(
        i
        for i, e in enumerate(events)
        if e.type == "ok" and e.process == read.process and e.time_ns == read.return_ns
    )
    assert check_history(events, timeout_s=60).ok
    result = check_history(corrupt(events, target, value), timeout_s=60)
    assert result.verdict == "violation"
    assert result.violations[0].key == read.key


# --- sequential executions against an independent reference ---------------------------


def reference(store: dict[str, str], f: str, key: str, arg: object) -> tuple[bool, object]:
    """Redis as a dictionary of strings: (took effect, reply); (False, None) for errors."""
    current = store.get(key)
    if f == "get":
        return True, current
    if f == "set":
        store[key] = str(arg)
        return True, "OK"
    if f == "del":
        return True, int(store.pop(key, None) is not None)
    if f == "incr":
        if current is not None and not re.fullmatch(r"0|-?[1-9][0-9]*", current):
            return False, None  # ERR value is not an integer
        total = int(current or 0) + (1 if arg is None else int(str(arg)))
        store[key] = str(total)
        return True, total
    assert isinstance(arg, list)
    expected, new = arg
    if current == (None if expected is None else str(expected)):
        store[key] = str(new)
        return True, 1
    return True, 0


SCALARS = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "7", "-2", "07"]))
OPERATION = st.one_of(
    st.tuples(st.just("get"), st.none()),
    st.tuples(st.just("set"), SCALARS),
    st.tuples(st.just("del"), st.none()),
    st.tuples(st.just("incr"), st.one_of(st.none(), st.integers(-3, 3))),
    st.tuples(st.just("cas"), st.lists(st.one_of(st.none(), SCALARS), min_size=2, max_size=2)),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            OPERATION,
            st.sampled_from(["x", "y"]),
            st.sampled_from(["ok", "ok", "ok", "fail", "info-applied", "info-lost"]),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_sequential_executions_are_always_linearizable(
    steps: list[tuple[tuple[str, object], str, str]], last_open: bool
) -> None:
    store: dict[str, str] = {}
    events: list[Event] = []
    now = 0
    for process, ((f, drawn), key, drawn_outcome) in enumerate(steps):
        arg = (
            [drawn[0], 0] if f == "cas" and isinstance(drawn, list) and drawn[1] is None else drawn
        )
        outcome = drawn_outcome
        now += 10
        events.append(Event(process, "invoke", f, key, arg, now))
        if outcome == "fail" or outcome == "info-lost":
            reply: object = None
        else:
            applied, reply = reference(store, f, key, arg)
            if not applied:
                outcome = "fail"  # Redis answered with an error
        now += 10
        if last_open and process == len(steps) - 1:
            continue  # the last operation never completes
        kind: EventType = "ok" if outcome == "ok" else "fail" if outcome == "fail" else "info"
        events.append(Event(process, kind, f, key, reply if kind == "ok" else None, now))
    result = check_history(events, timeout_s=60)
    assert result.verdict == "ok", result.explain()
