"""The value model: what a key can hold, and the typed access every command goes through.

A key holds a string (``bytes``, as before: the hot path stays one dict lookup) or one of
four mutable containers, each a small subclass so that ``type(value) is Hash`` is the type
check (Redis's ``checkType``):

- :class:`Hash`: a dict of field to value, in insertion order (HGETALL's order, and
  Redis's own for a small hash, which it keeps as a listpack in insertion order);
- :class:`SetValue`: a dict of member to ``None``, never a Python ``set``, whose iteration
  order depends on the process's hash seed and would differ between replicas;
- :class:`ListValue`: a deque;
- :class:`ZSet`: a dict of member to score plus a ``SortedList`` of ``(score, member)``,
  Redis's order (score, then the member's bytes), with O(log n) rank and range lookups.

Containers are changed in place, so every change goes through
:class:`~pyxos.kv.typed_keyspace.TypedKeyspace`, which tells WATCHers and blocked clients
about it, and a snapshot copies them (:func:`snapshot_copy`). An empty container is never
stored: the command that empties it deletes the key, as Redis does.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from typing import TypeAlias, TypeVar

from sortedcontainers import SortedList

from pyxos.kv.commands import string2ll
from pyxos.resp.replies import ErrorReply, Reply

__all__ = [
    "ERR_NOT_FLOAT",
    "NULL_ARRAY",
    "WRONGTYPE",
    "Container",
    "Hash",
    "ListValue",
    "SetValue",
    "Value",
    "WrongTypeError",
    "ZSet",
    "as_string",
    "copy_value",
    "encoding_name",
    "format_score",
    "parse_double",
    "snapshot_copy",
    "type_name",
]

WRONGTYPE = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")
ERR_NOT_FLOAT = ErrorReply("ERR value is not a valid float")


NULL_ARRAY: list[Reply] = []
"""The null array (``*-1`` in RESP2) some commands answer, by identity: the state machine
encodes it (the reply encoder has no such value); a script sees it as nil."""


class WrongTypeError(Exception):
    """Raised by the typed accessors; the dispatcher answers :data:`WRONGTYPE`."""


class Hash(dict[bytes, bytes]):
    """A hash: field to value, in insertion order."""

    __slots__ = ()

    def copy(self) -> Hash:
        return Hash(self)


class SetValue(dict[bytes, None]):
    """A set: its members as the keys of a dict (deterministic order, unlike ``set``)."""

    __slots__ = ()

    def copy(self) -> SetValue:
        return SetValue(self)


class ListValue(deque[bytes]):
    """A list: a deque, O(1) at both ends."""

    __slots__ = ()

    def copy(self) -> ListValue:
        return ListValue(self)


class ZSet:
    """A sorted set: ``scores`` maps member to score, ``index`` holds ``(score, member)``
    in Redis's order, so ranks and ranges cost O(log n + m)."""

    __slots__ = ("index", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.index: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self.scores)

    def __bool__(self) -> bool:
        return bool(self.scores)

    def add(self, member: bytes, score: float) -> None:
        """Set a member's score (adding the member if new). A zero is stored as +0: Redis
        keeps small sets' scores as text, where -0 becomes 0."""
        score += 0.0
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return
            self.index.remove((old, member))
        self.scores[member] = score
        self.index.add((score, member))

    def remove(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        self.index.remove((old, member))
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        return None if score is None else int(self.index.index((score, member)))

    def copy(self) -> ZSet:
        new = ZSet()
        new.scores = self.scores.copy()
        new.index = self.index.copy()
        return new


Value: TypeAlias = "bytes | Hash | SetValue | ListValue | ZSet"
Container = TypeVar("Container", Hash, SetValue, ListValue, ZSet)
"""One of the four container types (an accessor returns the kind it is asked for)."""
"""One of the four container types (for accessors that return the kind they are asked for)."""

_TYPE_NAMES: dict[type, str] = {
    bytes: "string",
    Hash: "hash",
    SetValue: "set",
    ListValue: "list",
    ZSet: "zset",
}


def type_name(value: Value) -> str:
    """What TYPE answers for a value."""
    return _TYPE_NAMES[type(value)]


def copy_value(value: Value) -> Value:
    """An independent copy (COPY); strings are immutable and shared."""
    return value if isinstance(value, bytes) else value.copy()


def snapshot_copy(value: Value) -> Value:
    """A copy for a snapshot, taken on the event loop so kept cheap: a sorted set's scores
    only (a dict copy; its index is rebuilt when the snapshot is restored, and copying a
    ``SortedList`` costs several times more). Only snapshot encoding and the digest read it."""
    if isinstance(value, ZSet):
        z = ZSet()
        z.scores = value.scores.copy()
        return z
    return copy_value(value)


# Redis 7.0's default thresholds for its compact encodings.
_HASH_MAX_ENTRIES = _ZSET_MAX_ENTRIES = 128
_HASH_MAX_VALUE = _ZSET_MAX_VALUE = 64
_SET_MAX_INTSET = 512


def is_intset(members: Iterable[bytes], size: int) -> bool:
    """Whether Redis would keep these set members as an intset (all integers, few)."""
    return size <= _SET_MAX_INTSET and all(string2ll(m) is not None for m in members)


def encoding_name(value: Value) -> str:
    """OBJECT ENCODING of a container, by Redis 7.0's rules for its current contents (Redis
    never converts a big encoding back when the value shrinks; pyxos reports the encoding
    the contents would get if built afresh)."""
    t = type(value)
    if t is Hash:
        assert isinstance(value, Hash)
        small = len(value) <= _HASH_MAX_ENTRIES and all(
            len(f) <= _HASH_MAX_VALUE and len(v) <= _HASH_MAX_VALUE for f, v in value.items()
        )
        return "listpack" if small else "hashtable"
    if t is SetValue:
        assert isinstance(value, SetValue)
        return "intset" if is_intset(value, len(value)) else "hashtable"
    if t is ZSet:
        assert isinstance(value, ZSet)
        small = len(value) <= _ZSET_MAX_ENTRIES and all(
            len(m) <= _ZSET_MAX_VALUE for m in value.scores
        )
        return "listpack" if small else "skiplist"
    return "quicklist"


# --- doubles as Redis reads and prints them ---------------------------------------------------

_DECIMAL = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(
    rb"([+-]?)0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
)
_INF = re.compile(rb"[+-]?(?:inf|infinity)", re.IGNORECASE)
_NAN = re.compile(rb"[+-]?nan(?:\([0-9A-Za-z_]*\))?", re.IGNORECASE)


def strtod(text: bytes) -> float | None:
    """C's ``strtod`` over the whole of ``text`` (Redis checks nothing follows), or None.

    Returns inf for an overflowing decimal and 0.0 for an underflowing one, as strtod
    does; callers decide whether that is acceptable (:func:`parse_double`)."""
    if _DECIMAL.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text[:1] == b"-" else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    m = _HEX.fullmatch(text)
    if m is not None:
        body = m.group(2).decode()
        if "p" not in body.lower():
            body += "p0"
        try:
            value = float.fromhex(body)
        except OverflowError:
            value = math.inf
        return -value if m.group(1) == b"-" else value
    return None


def parse_double(text: bytes) -> float | None:
    """Redis's ``getDoubleFromObject``: strtod over the whole argument, no leading space,
    no NaN, no overflow to infinity nor underflow to zero (ERANGE); None when refused."""
    value = strtod(text)
    if value is None or math.isnan(value):
        return None
    if math.isinf(value) and not _INF.fullmatch(text):
        return None
    if value == 0.0 and re.search(rb"[1-9]", re.split(rb"[eEpP]", text)[0]):
        return None  # underflow
    return value


def format_score(value: float) -> bytes:
    """A double as Redis 7.0 prints it (``addReplyDouble``): ``%.17g``, ``inf``, ``-inf``."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


def as_string(value: Value | None) -> bytes | None:
    """A looked-up value as a string, None if absent; WRONGTYPE if it is a container."""
    if value is None or type(value) is bytes:
        return value
    raise WrongTypeError
