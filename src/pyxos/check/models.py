"""Sequential specifications that the search engine checks histories against.

A model says what one key (or one register) may do when operations are applied to it one
at a time: an initial state, and a ``step`` that, given a state and an operation (with its
recorded result), returns every state the object may be in afterwards. An empty answer
means the operation, with that result, is impossible in that state. Returning several
states lets a model be nondeterministic; the engine branches over them.

An operation with an unknown outcome (``op.known`` is false) has no result to check: a
model must then return the states it would reach if the operation took effect. That it
may also never take effect is the engine's business (it simply never applies it), so
models need not return "unchanged" for that case.

States must be hashable and compare by value: the engine caches (linearized set, state)
pairs to avoid exploring the same configuration twice.

Three models share the one engine: :class:`KVModel` for pyxos's own histories (Redis
semantics for get/set/del/incr/cas), :class:`RegisterModel` for Jepsen's etcd register
(read/write/cas) and :class:`AppendModel` for Porcupine's key-value histories
(get/put/append, keys start as the empty string).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import ClassVar, Generic, TypeVar

from pyxos.check.history import Op

S = TypeVar("S", bound=Hashable)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Model(ABC, Generic[S]):
    """The sequential specification of one partition (key) of a history."""

    #: Short name, used in reports.
    name: ClassVar[str]
    #: The operation names this model understands.
    functions: ClassVar[frozenset[str]]
    #: Operations that never change the state. With an unknown outcome they can neither
    #: constrain nor affect anything, so the checker drops them before searching.
    read_only: ClassVar[frozenset[str]]

    @abstractmethod
    def init(self) -> S:
        """The state of a key nobody has written yet."""

    @abstractmethod
    def step(self, state: S, op: Op) -> Sequence[S]:
        """The possible states after applying ``op`` in ``state``; empty if impossible."""

    def prepare(self, op: Op) -> Op:
        """Normalize an operation once, before the search calls ``step`` on it many times.

        ``step`` must give the same answers for ``op`` and ``prepare(op)``; preparing only
        moves work (such as converting values) out of the search's inner loop.
        """
        return op

    def describe_state(self, state: S) -> str:
        """Render a state for explanations."""
        return repr(state)


def canonical(value: object) -> str:
    """The Redis string a client value stands for.

    Redis stores strings only: ``SET k 5`` followed by ``GET k`` reads ``"5"``, and
    ``INCR`` returns an integer reply for a string value. Comparing canonical strings makes
    ``5`` and ``"5"`` the same value, as they are on the server.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"not a key-value value (int or str): {value!r}")


def parse_redis_int(text: str) -> int | None:
    """Parse ``text`` the way Redis's ``string2ll`` does, or return ``None``.

    ``INCR`` only works on strings that are exactly the decimal form of a signed 64-bit
    integer: no sign other than a leading ``-``, no leading zeros, no spaces, no ``-0``.
    Python's ``int()`` is more lenient (``" 7"``, ``"+7"``, ``"007"``, ``"1_000"``), which
    would make the model accept increments the server rejects.
    """
    digits = text[1:] if text.startswith("-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    if digits[0] == "0" and (len(digits) > 1 or text.startswith("-")):
        return None
    number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        return None
    return number


def _incr(state: str | None, delta: int) -> str | None:
    """The value INCRBY would store, or ``None`` when Redis would reply with an error."""
    current = 0 if state is None else parse_redis_int(state)
    if current is None:
        return None
    new = current + delta
    if not INT64_MIN <= new <= INT64_MAX:
        return None
    return str(new)


class KVModel(Model[str | None]):
    """One key of the pyxos key-value store: absent (``None``) or a Redis string.

    - ``get`` reads the value (``None`` when absent);
    - ``set`` stores its argument; ``del`` removes the key; their results are not checked;
    - ``incr`` treats an absent key as 0, needs an integer string otherwise, stores and
      returns the sum (delta ``None`` means 1); on a non-integer or overflow Redis replies
      with an error and changes nothing, so an ``ok`` incr is then impossible;
    - ``cas [expected, new]`` stores ``new`` and returns 1 when the value equals
      ``expected`` (``None`` matching an absent key), else returns 0 and changes nothing.
    """

    name = "kv"
    functions = frozenset({"get", "set", "del", "incr", "cas"})
    read_only = frozenset({"get"})

    def init(self) -> str | None:
        return None

    def step(self, state: str | None, op: Op) -> Sequence[str | None]:
        f = op.f
        if f == "get":
            if not op.known:
                return (state,)
            result = op.result
            if result is not None and type(result) is not str:
                result = canonical(result)
            return (state,) if result == state else ()
        if f == "set":
            value = op.arg
            return (value if type(value) is str else canonical(value),)
        if f == "del":
            return (None,)
        if f == "incr":
            delta = 1 if op.arg is None else op.arg
            if not isinstance(delta, int):
                raise TypeError(f"incr delta must be an int: {delta!r}")
            new = _incr(state, delta)
            if new is None:
                # Redis replies with an error and leaves the value alone: no ok possible.
                return () if op.known else (state,)
            if op.known and canonical(op.result) != new:
                return ()
            return (new,)
        if f == "cas":
            arg = op.arg
            expected, replacement = arg if type(arg) is tuple else _pair(arg)
            if expected is not None and type(expected) is not str:
                expected = canonical(expected)
            if op.known and _swapped(op.result) != (state == expected):
                return ()
            if state != expected:
                return (state,)
            return (replacement if type(replacement) is str else canonical(replacement),)
        raise ValueError(f"the kv model has no operation {f!r}")

    def prepare(self, op: Op) -> Op:
        """Turn values into their Redis strings, and cas arguments into tuples."""
        arg, result = op.arg, op.result
        if op.f == "set":
            arg = canonical(arg)
        elif op.f == "cas":
            expected, new = _pair(arg)
            arg = (None if expected is None else canonical(expected), canonical(new))
            if op.known:
                result = _swapped(result)
        elif (op.f == "get" and result is not None) or (op.f == "incr" and op.known):
            result = canonical(result)
        return replace(op, arg=arg, result=result)


class RegisterModel(Model[int | None]):
    """Jepsen's etcd register: ``read``, ``write``, and ``cas [old, new]``.

    The register starts empty (``None``). A ``cas`` result is a boolean: true when it
    swapped, false when the register was not ``old`` (Jepsen records that as ``:fail``,
    but it is an observation, not an operation that did not happen).
    """

    name = "register"
    functions = frozenset({"read", "write", "cas"})
    read_only = frozenset({"read"})

    def init(self) -> int | None:
        return None

    def step(self, state: int | None, op: Op) -> Sequence[int | None]:
        f = op.f
        if f == "read":
            if not op.known or op.result == state:
                return (state,)
            return ()
        if f == "write":
            if not isinstance(op.arg, int):
                raise TypeError(f"register write needs an int: {op.arg!r}")
            return (op.arg,)
        if f == "cas":
            old, new = _pair(op.arg)
            if not isinstance(new, int):
                raise TypeError(f"register cas needs an int: {new!r}")
            matches = state == old
            if op.known and _swapped(op.result) != matches:
                return ()
            return (new,) if matches else (state,)
        raise ValueError(f"the register model has no operation {f!r}")


class AppendModel(Model[str]):
    """Porcupine's key-value store: ``get``, ``put`` and ``append`` on strings.

    Keys start as the empty string and ``append`` concatenates; ``put`` and ``append``
    results are not checked.
    """

    name = "append"
    functions = frozenset({"get", "put", "append"})
    read_only = frozenset({"get"})

    def init(self) -> str:
        return ""

    def step(self, state: str, op: Op) -> Sequence[str]:
        f = op.f
        if f == "get":
            if not op.known or op.result == state:
                return (state,)
            return ()
        if not isinstance(op.arg, str):
            raise TypeError(f"{f} needs a string: {op.arg!r}")
        if f == "put":
            return (op.arg,)
        if f == "append":
            return (state + op.arg,)
        raise ValueError(f"the append model has no operation {f!r}")


def _pair(arg: object) -> tuple[object, object]:
    """Split a cas argument ``[expected, new]``."""
    if not isinstance(arg, list | tuple) or len(arg) != 2:
        raise TypeError(f"cas needs [expected, new]: {arg!r}")
    return arg[0], arg[1]


def _swapped(result: object) -> bool:
    """Read a cas result: 1/true when it swapped, 0/false when it did not."""
    if result in (0, 1):  # also True and False
        return bool(result)
    raise TypeError(f"cas result must be 1 or 0: {result!r}")
