"""pyxos's own history files: JSON lines, as ``pyxos chaos`` writes them.

One object a line (docs/DESIGN.md section 7)::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": [null, 5], "time_ns": 17}

The reader validates every line before anything is checked, because a checker that
silently misreads its input can pass a broken store: an unparseable line, a missing
field, a cas without ``[expected, new]`` or an incr that returned a word all stop the
check with a :class:`~pyxos.check.history.HistoryError` naming the line. Extra fields are
allowed (a tester may record more than the checker needs) and ignored. Blank lines are
skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final

from pyxos.check.history import EVENT_TYPES, Event, EventType, HistoryError
from pyxos.check.models import parse_redis_int

KV_FUNCTIONS: Final = ("get", "set", "del", "incr", "cas")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    """A value the store holds: an int or a string (bools and floats are not)."""
    return _is_int(value) or isinstance(value, str)


def _check_value(etype: str, f: str, value: object) -> str | None:
    """Why ``value`` is not a valid payload for this event, or None when it is."""
    if etype == "invoke":
        if f in ("get", "del"):
            return None if value is None else f"a {f} invocation carries null"
        if f == "set":
            return None if _is_scalar(value) else "set needs an int or string value"
        if f == "incr":
            return None if value is None or _is_int(value) else "incr needs an int delta or null"
        if (  # cas
            isinstance(value, list)
            and len(value) == 2
            and (value[0] is None or _is_scalar(value[0]))
            and _is_scalar(value[1])
        ):
            return None
        return "cas needs [expected, new] with expected int/string/null and new int/string"
    if etype != "ok":
        return None  # fail and info carry nothing the checker uses
    if f == "get":
        return None if value is None or _is_scalar(value) else "get reads an int, string or null"
    if f == "incr":
        if _is_int(value) or (isinstance(value, str) and parse_redis_int(value) is not None):
            return None
        return "incr returns the new value, an integer"
    if f == "cas":
        return None if value in (0, 1) and not isinstance(value, float) else "cas returns 1 or 0"
    return None  # set and del: anything


def parse_event(text: str, line: int | None = None) -> Event:
    """Parse and validate one line of a history file."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"not valid JSON: {exc.msg} at column {exc.colno}", line) from None
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}", line)
    missing = [k for k in ("process", "type", "f", "key", "time_ns") if k not in obj]
    if "value" not in obj:
        missing.append("value")
    if missing:
        raise HistoryError(f"missing field(s): {', '.join(missing)}", line)
    process, etype, f, key, time_ns = (obj[k] for k in ("process", "type", "f", "key", "time_ns"))
    value = obj["value"]
    if not _is_int(process):
        raise HistoryError(f"process must be an integer, got {process!r}", line)
    if etype not in EVENT_TYPES:
        raise HistoryError(f"type must be one of {', '.join(EVENT_TYPES)}; got {etype!r}", line)
    if f not in KV_FUNCTIONS:
        raise HistoryError(f"f must be one of {', '.join(KV_FUNCTIONS)}; got {f!r}", line)
    if not isinstance(key, str):
        raise HistoryError(f"key must be a string, got {key!r}", line)
    if not _is_int(time_ns):
        raise HistoryError(f"time_ns must be an integer, got {time_ns!r}", line)
    problem = _check_value(etype, f, value)
    if problem is not None:
        raise HistoryError(f"{problem}; got {value!r} in {etype} {f}", line)
    event_type: EventType = etype
    return Event(process, event_type, f, key, value, time_ns, line)


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    """Parse the lines of a history file, numbering them from 1 for error messages."""
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield parse_event(text, number)


def read_history(source: str | os.PathLike[str] | IO[str]) -> list[Event]:
    """Read and validate a whole history file (a path or an open text file)."""
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as fp:
            return list(parse_lines(fp))
    return list(parse_lines(source))


def event_to_json(event: Event) -> str:
    """One history line for ``event`` (without the newline)."""
    obj: dict[str, Any] = {
        "process": event.process,
        "type": event.type,
        "f": event.f,
        "key": event.key,
        "value": list(event.value) if isinstance(event.value, tuple) else event.value,
        "time_ns": event.time_ns,
    }
    # ASCII only: a raw U+2028 or U+0085 in a key would split the line for some readers.
    return json.dumps(obj, separators=(",", ":"))


def write_history(events: Iterable[Event], dest: str | os.PathLike[str] | IO[str]) -> None:
    """Write ``events`` as a history file (a path, replaced, or an open text file)."""
    if isinstance(dest, str | os.PathLike):
        with open(dest, "w", encoding="utf-8") as fp:
            _write(events, fp)
    else:
        _write(events, dest)


def _write(events: Iterable[Event], fp: IO[str]) -> None:
    for event in events:
        fp.write(event_to_json(event))
        fp.write("\n")
