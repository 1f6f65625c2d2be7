"""The sequential specifications, one step at a time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxos.check import AppendModel, KVModel, Op, RegisterModel
from pyxos.check.models import INT64_MAX, canonical, parse_redis_int


def op(f: str, arg: object = None, result: object = None, *, known: bool = True) -> Op:
    return Op(0, 0, f, "k", arg, result, 0, 1 if known else None)


KV = KVModel()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("-12", -12),
        (str(INT64_MAX), INT64_MAX),
        (str(-(2**63)), -(2**63)),
        (str(INT64_MAX + 1), None),
        ("", None),
        ("-", None),
        ("-0", None),
        ("007", None),
        ("+7", None),
        (" 7", None),
        ("7 ", None),
        ("1_000", None),
        ("1e3", None),
        ("٣", None),  # a non-ASCII digit that int() would accept
        ("abc", None),
    ],
)
def test_parse_redis_int_is_as_strict_as_redis(text: str, expected: int | None) -> None:
    assert parse_redis_int(text) == expected


@given(st.integers(-(2**63), 2**63 - 1))
def test_parse_redis_int_round_trips_every_int64(n: int) -> None:
    assert parse_redis_int(str(n)) == n


def test_canonical_values_are_redis_strings() -> None:
    assert canonical(5) == canonical("5") == "5"
    with pytest.raises(TypeError):
        canonical(True)
    with pytest.raises(TypeError):
        canonical(1.5)


def test_kv_get_set_del() -> None:
    assert KV.init() is None
    assert KV.step(None, op("get", result=None)) == (None,)
    assert KV.step(None, op("get", result=1)) == ()
    assert KV.step(None, op("set", 5)) == ("5",)
    assert KV.step("5", op("get", result=5)) == ("5",)
    assert KV.step("5", op("get", result="5")) == ("5",)
    assert KV.step("5", op("get", result=None)) == ()
    assert KV.step("5", op("del", result=0)) == (None,)  # del's result is not checked
    assert KV.step("5", op("get", known=False)) == ("5",)


def test_kv_incr() -> None:
    assert KV.step(None, op("incr", None, 1)) == ("1",)
    assert KV.step("41", op("incr", None, 42)) == ("42",)
    assert KV.step("41", op("incr", None, "42")) == ("42",)
    assert KV.step("41", op("incr", 9, 50)) == ("50",)
    assert KV.step("41", op("incr", None, 43)) == ()
    # Redis errors leave the value alone: impossible if ok, no effect if unknown.
    assert KV.step("abc", op("incr", None, 1)) == ()
    assert KV.step("abc", op("incr", known=False)) == ("abc",)
    assert KV.step(str(INT64_MAX), op("incr", None, INT64_MAX + 1)) == ()
    assert KV.step("5", op("incr", known=False)) == ("6",)


def test_kv_cas() -> None:
    assert KV.step(None, op("cas", [None, 1], 1)) == ("1",)
    assert KV.step(None, op("cas", [None, 1], 0)) == ()
    assert KV.step("1", op("cas", [1, 2], 1)) == ("2",)
    assert KV.step("1", op("cas", ["1", 2], True)) == ("2",)
    assert KV.step("1", op("cas", [3, 2], 0)) == ("1",)
    assert KV.step("1", op("cas", [3, 2], 1)) == ()
    assert KV.step("1", op("cas", [None, 2], 1)) == ()  # null only matches absent
    assert KV.step("1", op("cas", [1, 2], known=False)) == ("2",)
    assert KV.step("1", op("cas", [3, 2], known=False)) == ("1",)


@pytest.mark.parametrize(
    "subject",
    [
        op("get", result=7),
        op("set", 7),
        op("incr", 2, "9"),
        op("cas", [7, 8], 1),
        op("cas", [None, "x"], 0),
        op("cas", [7, 8], known=False),
        op("del"),
    ],
)
@pytest.mark.parametrize("state", [None, "7", "x"])
def test_kv_prepare_does_not_change_answers(subject: Op, state: str | None) -> None:
    assert KV.step(state, KV.prepare(subject)) == KV.step(state, subject)


def test_kv_rejects_unknown_operations() -> None:
    with pytest.raises(ValueError, match="no operation"):
        KV.step(None, op("append", "x"))


def test_register_model() -> None:
    reg = RegisterModel()
    assert reg.init() is None
    assert reg.step(None, op("read", result=None)) == (None,)
    assert reg.step(3, op("read", result=4)) == ()
    assert reg.step(3, op("write", 4)) == (4,)
    assert reg.step(3, op("cas", (3, 1), True)) == (1,)
    assert reg.step(3, op("cas", (2, 1), False)) == (3,)
    assert reg.step(3, op("cas", (2, 1), True)) == ()
    assert reg.step(3, op("cas", (3, 1), known=False)) == (1,)


def test_append_model() -> None:
    app = AppendModel()
    assert app.init() == ""
    assert app.step("", op("get", result="")) == ("",)
    assert app.step("ab", op("append", "c")) == ("abc",)
    assert app.step("ab", op("put", "c")) == ("c",)
    assert app.step("ab", op("get", result="a")) == ()
