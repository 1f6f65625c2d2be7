"""Readers for histories recorded by other projects (../shared/testdata).

They let the checker be tested on histories nobody on this project wrote, with verdicts
established elsewhere. Both become ordinary :class:`~pyxos.check.history.Event` lists
(times are line numbers: only the order of lines is recorded), to be checked with the
matching model:

- Jepsen's etcd logs -> :class:`~pyxos.check.models.RegisterModel`;
- Porcupine's key-value logs -> :class:`~pyxos.check.models.AppendModel`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

from pyxos.check.history import Event, EventType, HistoryError

ETCD_KEY: Final = "register"

_ETCD_LINE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$"
)
_ETCD_CAS = re.compile(r"^\[\s*(-?\d+|nil)\s+(-?\d+|nil)\s*\]$")
_INT = re.compile(r"^-?\d+$")

_EDN_STRING = r'"((?:[^"\\]|\\.)*)"'
_PORCUPINE_LINE = re.compile(
    r"^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append),"
    rf" :key {_EDN_STRING}, :value (nil|{_EDN_STRING})\}}\s*$"
)
_EDN_ESCAPE = re.compile(r"\\(.)")


def _matching_lines(
    lines: Iterable[str], pattern: re.Pattern[str], what: str
) -> Iterator[tuple[int, re.Match[str]]]:
    """Each non-blank line's number (from 1) and its match; a line that does not match is
    an error naming it."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        match = pattern.match(text)
        if match is None:
            raise HistoryError(f"not {what}: {text.strip()!r}", number)
        yield number, match


def parse_jepsen_etcd(lines: Iterable[str]) -> list[Event]:
    """Parse a Jepsen etcd log (``INFO  jepsen.util - 3\\t:invoke\\t:write\\t4``).

    Jepsen's words are translated into this project's meanings:

    - ``:fail :read`` (timed out) becomes ``fail``: a read that got no answer
      constrains nothing;
    - ``:fail :cas`` becomes ``ok`` with result ``False``: the compare failed, which is
      an observation of the register, not an operation that did not happen;
    - ``:ok :cas`` is ``ok`` with ``True``; ``:info`` stays ``info`` (unknown outcome).
    """
    events: list[Event] = []
    for number, match in _matching_lines(lines, _ETCD_LINE, "a Jepsen etcd log line"):
        process, etype, f, raw = match.groups()
        value: object
        event_type: EventType
        if etype == "invoke":
            event_type = "invoke"
            value = _etcd_argument(f, raw, number)
        elif etype == "ok":
            event_type = "ok"
            value = True if f == "cas" else _etcd_scalar(raw, number) if f == "read" else None
        elif etype == "fail" and f == "cas":
            event_type, value = "ok", False
        elif etype == "fail":
            event_type, value = "fail", None
        else:
            event_type, value = "info", None
        events.append(Event(int(process), event_type, f, ETCD_KEY, value, number, number))
    return events


def _etcd_scalar(raw: str, line: int) -> int | None:
    if raw == "nil":
        return None
    if _INT.match(raw):
        return int(raw)
    raise HistoryError(f"expected an integer or nil, got {raw!r}", line)


def _etcd_argument(f: str, raw: str, line: int) -> object:
    if f == "read":
        return None
    if f == "write":
        value = _etcd_scalar(raw, line)
        if value is None:
            raise HistoryError("a write needs an integer", line)
        return value
    match = _ETCD_CAS.match(raw)
    if match is None:
        raise HistoryError(f"a cas needs [old new], got {raw!r}", line)
    old, new = (_etcd_scalar(v, line) for v in match.groups())
    if new is None:
        raise HistoryError("a cas needs an integer to write", line)
    return (old, new)


def parse_porcupine_kv(lines: Iterable[str]) -> list[Event]:
    """Parse a Porcupine key-value log (EDN maps, one a line).

    ``{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}``; a ``nil``
    value (a get's invocation) becomes ``None``.
    """
    events: list[Event] = []
    for number, match in _matching_lines(lines, _PORCUPINE_LINE, "a Porcupine key-value log line"):
        process, etype, f, key, raw, string = match.groups()
        value = None if raw == "nil" else _EDN_ESCAPE.sub(r"\1", string)
        event_type: EventType = "invoke"
        if etype != "invoke":
            event_type = "ok" if etype == "ok" else "fail" if etype == "fail" else "info"
        events.append(
            Event(int(process), event_type, f, _EDN_ESCAPE.sub(r"\1", key), value, number, number)
        )
    return events
