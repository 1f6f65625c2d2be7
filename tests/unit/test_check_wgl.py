"""The linearizability search on small hand-written histories whose verdict is obvious
once drawn on a time line, plus a brute-force cross-check on random tiny histories."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxos.check import (
    CheckResult,
    Event,
    KVModel,
    Model,
    Op,
    build_operations,
    check_history,
    check_operations,
    search,
)
from pyxos.check.history import EventType

# --- a tiny notation: one tuple per operation, each on its own process ----------------

# (outcome, f, key, argument, result, start, end); outcome None: never completes.
Spec = tuple[EventType | None, str, str, object, object, int, int | None]


def ok(f: str, key: str, arg: object, result: object, start: int, end: int) -> Spec:
    return ("ok", f, key, arg, result, start, end)


def info(f: str, key: str, arg: object, start: int, end: int) -> Spec:
    return ("info", f, key, arg, None, start, end)


def fail(f: str, key: str, arg: object, start: int, end: int) -> Spec:
    return ("fail", f, key, arg, None, start, end)


def open_(f: str, key: str, arg: object, start: int) -> Spec:
    """Invoked, never completed."""
    return (None, f, key, arg, None, start, None)


def events(*specs: Spec) -> list[Event]:
    """Events of the operations, in time order (invocations first at equal times)."""
    out: list[tuple[int, int, Event]] = []
    for process, (outcome, f, key, arg, result, start, end) in enumerate(specs):
        out.append((start, 0, Event(process, "invoke", f, key, arg, start)))
        if outcome is not None and end is not None:
            out.append((end, 1, Event(process, outcome, f, key, result, end)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in out]


def check(*specs: Spec) -> CheckResult:
    return check_history(events(*specs), timeout_s=30)


# --- histories that are not linearizable ----------------------------------------------


def test_stale_read() -> None:
    result = check(
        ok("set", "x", 1, "OK", 0, 10),
        ok("set", "x", 2, "OK", 20, 30),
        ok("get", "x", None, 1, 40, 50),
    )
    assert result.verdict == "violation"
    (violation,) = result.violations
    assert violation.key == "x"
    assert violation.state == "'2'"
    # The stale read is what cannot come next, and the model is why.
    assert [(c.op.f, c.op.result, c.accepted) for c in violation.candidates] == [("get", 1, False)]
    assert [op.f for op in violation.prefix] == ["set", "set"]
    text = result.explain()
    assert "key 'x' is not linearizable" in text
    assert "impossible in that state" in text


def test_lost_write() -> None:
    assert (
        check(
            ok("set", "x", "a", "OK", 0, 10),
            ok("get", "x", None, None, 20, 30),
        ).verdict
        == "violation"
    )


def test_read_of_a_value_never_written() -> None:
    assert (
        check(
            ok("set", "x", 1, "OK", 0, 10),
            ok("get", "x", None, 7, 5, 30),
        ).verdict
        == "violation"
    )


def test_cas_succeeding_twice_from_the_same_value() -> None:
    result = check(
        ok("set", "x", 0, "OK", 0, 5),
        ok("cas", "x", [0, 1], 1, 10, 20),
        ok("cas", "x", [0, 2], 1, 12, 22),
    )
    assert result.verdict == "violation"


def test_incr_that_skips_a_value() -> None:
    assert (
        check(
            ok("incr", "n", None, 1, 0, 10),
            ok("incr", "n", None, 3, 20, 30),
        ).verdict
        == "violation"
    )


def test_unknown_write_cannot_take_effect_before_it_is_invoked() -> None:
    assert (
        check(
            ok("get", "x", None, 1, 0, 10),
            info("set", "x", 1, 20, 30),
        ).verdict
        == "violation"
    )


def test_failed_write_did_not_happen() -> None:
    assert check(fail("set", "x", 1, 0, 10), ok("get", "x", None, 1, 20, 30)).verdict == "violation"
    assert check(fail("set", "x", 1, 0, 10), ok("get", "x", None, None, 20, 30)).ok


def test_read_after_write_completed_must_see_it_even_if_other_key_is_fine() -> None:
    result = check(
        ok("set", "y", 1, "OK", 0, 10),
        ok("get", "y", None, 1, 20, 30),
        ok("set", "x", 1, "OK", 0, 10),
        ok("get", "x", None, None, 20, 30),
    )
    assert result.verdict == "violation"
    assert {k.key: k.verdict for k in result.keys}["y"] in ("ok", "skipped")
    assert [v.key for v in result.violations] == ["x"]


# --- histories that are linearizable ----------------------------------------------------


def test_concurrent_ops_linearizable_in_an_order_unlike_their_invocations() -> None:
    # set 1 is invoked first but must take effect after set 2 and the read of 2.
    result = check(
        ok("set", "x", 1, "OK", 0, 100),
        ok("set", "x", 2, "OK", 10, 20),
        ok("get", "x", None, 2, 30, 40),
        ok("get", "x", None, 1, 50, 60),
    )
    assert result.ok


def test_concurrent_cas_chain_resolves_in_reverse_invocation_order() -> None:
    # Three overlapping cas: only the order c, b, a explains every result.
    result = check(
        ok("cas", "x", [2, 3], 1, 0, 50),
        ok("cas", "x", [1, 2], 1, 1, 50),
        ok("cas", "x", [None, 1], 1, 2, 50),
        ok("get", "x", None, 3, 60, 70),
    )
    assert result.ok


def test_concurrent_increments_may_return_in_any_order() -> None:
    assert check(
        ok("incr", "n", None, 2, 0, 10),
        ok("incr", "n", None, 1, 1, 11),
        ok("incr", "n", 5, 7, 2, 12),
    ).ok


def test_operations_whose_intervals_touch_count_as_concurrent() -> None:
    assert check(ok("get", "x", None, 1, 0, 10), ok("set", "x", 1, "OK", 10, 20)).ok


def test_unknown_write_taking_effect_after_it_timed_out() -> None:
    # The write's info came back at 10, but it was applied only between 30 and 40.
    assert check(
        info("set", "x", 1, 0, 10),
        ok("get", "x", None, None, 20, 30),
        ok("get", "x", None, 1, 40, 50),
    ).ok


def test_unknown_writes_that_never_take_effect() -> None:
    result = check(
        info("set", "x", 1, 0, 10),
        open_("set", "x", 2, 5),
        info("incr", "x", None, 6, 8),
        ok("get", "x", None, None, 20, 30),
        ok("set", "x", 3, "OK", 40, 50),
        ok("get", "x", None, 3, 60, 70),
    )
    assert result.ok


def test_two_unknown_ops_needed_in_a_specific_order() -> None:
    # Only "unknown incr, incr -> 2, unknown del, get -> null" explains the results: the
    # search must apply both unknown operations, at different points. (Found by the
    # brute-force comparison below against a dominance check that ran the wrong way.)
    ops = [
        Op(0, 0, "del", "x", None, None, 0, None),
        Op(1, 1, "incr", "x", None, None, 0, None),
        Op(2, 2, "incr", "x", None, 2, 0, 0),
        Op(3, 3, "get", "x", None, None, 1, 1),
    ]
    assert check_operations(ops).ok
    assert not check_operations(ops[1:]).ok  # without the del, the get must read 2


def test_unknown_cas_either_way() -> None:
    base = (ok("set", "x", 1, "OK", 0, 5), info("cas", "x", [1, 2], 10, 15))
    assert check(*base, ok("get", "x", None, 2, 20, 30)).ok
    assert check(*base, ok("get", "x", None, 1, 20, 30)).ok
    assert check(*base, ok("get", "x", None, 3, 20, 30)).verdict == "violation"


def test_failed_or_unknown_get_constrains_nothing() -> None:
    assert check(
        ok("set", "x", 1, "OK", 0, 10),
        fail("get", "x", None, 20, 30),
        info("get", "x", None, 20, 30),
        ok("get", "x", None, 1, 40, 50),
    ).ok


def test_redis_semantics_of_the_kv_model() -> None:
    assert check(
        ok("cas", "x", [None, 5], 1, 0, 10),  # null matches absent
        ok("incr", "x", 2, 7, 20, 30),  # the string "5" is an integer
        ok("get", "x", None, "7", 40, 50),  # 7 and "7" are the same value
        ok("del", "x", None, 1, 60, 70),
        ok("incr", "x", None, 1, 80, 90),  # absent counts as 0
    ).ok
    # INCR on a non-integer is an error in Redis: an ok incr cannot follow.
    assert (
        check(ok("set", "x", "abc", "OK", 0, 10), ok("incr", "x", None, 1, 20, 30)).verdict
        == "violation"
    )


def test_empty_history_and_history_of_unknowns_are_linearizable() -> None:
    assert check().ok
    assert check(info("set", "x", 1, 0, 10), open_("del", "x", None, 20)).ok


def test_deep_sequential_history_does_not_recurse() -> None:
    n = 20_000
    result = check(*(ok("incr", "n", None, i + 1, 10 * i, 10 * i + 5) for i in range(n)))
    assert result.ok
    assert result.keys[0].ops == n


# --- the engine itself --------------------------------------------------------------------


class CoinModel(Model[int]):
    """A nondeterministic object: ``flip`` lands on 0 or 1, ``read`` returns the side."""

    name = "coin"
    functions = frozenset({"flip", "read"})
    read_only = frozenset({"read"})

    def init(self) -> int:
        return 0

    def step(self, state: int, op: Op) -> Sequence[int]:
        if op.f == "flip":
            return (0, 1)
        return (state,) if not op.known or op.result == state else ()


def coin_ops(*specs: Spec) -> list[Op]:
    return build_operations(events(*specs))


def test_engine_branches_over_nondeterministic_outcomes() -> None:
    flips = (
        ok("flip", "c", None, None, 0, 10),
        ok("read", "c", None, 1, 20, 30),
        ok("flip", "c", None, None, 40, 50),
        ok("read", "c", None, 0, 60, 70),
    )
    assert check_operations(coin_ops(*flips), CoinModel()).ok
    bad = (*flips, ok("read", "c", None, 2, 80, 90))
    assert check_operations(coin_ops(*bad), CoinModel()).verdict == "violation"


def hard_history(writers: int = 24) -> list[Event]:
    """Many concurrent writes, then a read of a value nobody wrote: WGL must try all
    orders of the writes (about writers * 2**writers configurations) to reject it."""
    specs = [ok("set", "x", i, "OK", i, 1000) for i in range(writers)]
    specs.append(ok("get", "x", None, -1, 2000, 2010))
    return events(*specs)


def test_search_out_of_time_is_unknown_never_ok() -> None:
    result = check_history(hard_history(), timeout_s=0.2)
    assert result.verdict == "unknown"
    assert not result.ok
    assert result.keys[0].verdict == "unknown"
    assert result.keys[0].steps > 0
    assert "ran out of time" in result.explain()


def test_timeout_with_a_controlled_clock() -> None:
    ticks = iter([0.0])

    def clock() -> float:
        return next(ticks, 100.0)  # time jumps past the deadline after the first look

    result = check_history(hard_history(8), timeout_s=1.0, clock=clock)
    assert result.verdict == "unknown"
    ops = build_operations(hard_history(8))
    assert search(KVModel(), ops, deadline=1.0, clock=clock).verdict == "unknown"
    assert search(KVModel(), ops).verdict == "violation"


# --- brute force: every order of every subset, for tiny histories ---------------------


def brute_force(ops: Sequence[Op], model: Model[Any]) -> bool:
    """Linearizable iff some subset of the unknown ops, with all completed ones, has an
    order that respects real time and that the model accepts step by step."""
    known = [op for op in ops if op.known]
    unknown = [op for op in ops if not op.known]

    def before(a: Op, b: Op) -> bool:  # a must precede b
        return a.return_ns is not None and a.return_ns < b.call_ns

    def accepted(order: Sequence[Op]) -> Iterator[bool]:
        states = [model.init()]
        for op in order:
            states = [n for s in states for n in model.step(s, op)]
            yield bool(states)

    for r in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, r):
            for order in itertools.permutations([*known, *chosen]):
                if any(before(b, a) for i, a in enumerate(order) for b in order[i + 1 :]):
                    continue
                if all(accepted(order)):
                    return True
    return False


VALUES = st.sampled_from([None, 1, 2])


@st.composite
def tiny_ops(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for index in range(draw(st.integers(1, 6))):
        f = draw(st.sampled_from(["get", "set", "del", "incr", "cas"]))
        arg: object = None
        result: object = None
        if f == "set":
            arg = draw(st.sampled_from([1, 2]))
        elif f == "incr":
            arg = draw(st.sampled_from([None, 1]))
            result = draw(st.integers(1, 3))
        elif f == "cas":
            arg = [draw(VALUES), draw(st.sampled_from([1, 2]))]
            result = draw(st.sampled_from([0, 1]))
        elif f == "get":
            result = draw(VALUES)
        start = draw(st.integers(0, 12))
        end = start + draw(st.integers(0, 12))
        known = draw(st.booleans())
        ops.append(
            Op(index, index, f, "x", arg, result if known else None, start, end if known else None)
        )
    return ops


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_ops())
def test_search_agrees_with_brute_force(ops: list[Op]) -> None:
    model = KVModel()
    expected = brute_force([op for op in ops if op.known or op.f != "get"], model)
    result = check_operations(ops, model, timeout_s=None)
    assert result.verdict == ("ok" if expected else "violation")


@pytest.mark.parametrize("writers", [3, 5])
def test_violation_explanation_names_the_culprit_read(writers: int) -> None:
    result = check_history(hard_history(writers), timeout_s=30)
    (violation,) = result.violations
    assert len([op for op in violation.prefix if op.f == "set"]) == writers
    assert [(c.op.f, c.accepted) for c in violation.candidates] == [("get", False)]
    assert violation.to_dict()["candidates"][0]["result"] == -1
