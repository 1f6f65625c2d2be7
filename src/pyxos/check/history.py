"""Events and operations: the two shapes a history takes inside the checker.

A recorded history is a sequence of *events*, one per line of a history file: a process
invokes an operation, and later the same process sees it complete (``ok``), fail
(``fail``), or time out with an unknown outcome (``info``). The checker reasons about
*operations* instead: an invocation paired with its completion, carrying the interval in
real time during which it may have taken effect. :func:`build_operations` does the
pairing, and it is shared by every input format so that they all obey the same rules
(docs/DESIGN.md section 7):

- ``fail`` means the operation definitely did not take effect, so it is dropped.
- ``info``, or an invocation that never completes, means the outcome is unknown: the
  operation gets no return time (``return_ns is None``), i.e. a return at +infinity, and
  the search may apply it at any point after its invocation, or never.
- A process has at most one operation open at a time; breaking that rule, or completing
  something that was never invoked, is a malformed history, not a violation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: Final[tuple[EventType, ...]] = ("invoke", "ok", "fail", "info")


class HistoryError(ValueError):
    """A malformed history (as opposed to a non-linearizable one).

    ``line`` is the 1-based line number in the source file when it is known, so that the
    message points at the culprit; ``reason`` is the message without the location.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(reason if line is None else f"line {line}: {reason}")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history: an invocation or a completion, as the tester saw it.

    ``line`` records where the event came from (for error messages and explanations); it
    is not part of the event's identity and is never written out.
    """

    process: int
    type: EventType
    f: str
    key: str
    value: object
    time_ns: int
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Op:
    """An invocation paired with its completion.

    ``return_ns is None`` marks an unknown outcome: the operation may take effect at any
    time after ``call_ns``, or never, so it must not constrain the search; its ``result``
    is then ``None`` and meaningless. ``index`` is the position of the invocation among
    all invocations of the history, a stable name for the operation in explanations.
    """

    index: int
    process: int
    f: str
    key: str
    arg: object
    result: object
    call_ns: int
    return_ns: int | None
    line: int | None = None

    @property
    def known(self) -> bool:
        """True when the operation completed ``ok`` (its result is an observation)."""
        return self.return_ns is not None

    def describe(self) -> str:
        """A one-line human description, e.g. ``#12 p3 get 'k' -> '7' [t=10..25] line 40``."""
        arg = "" if self.arg is None else f" {self.arg!r}"
        outcome = f" -> {self.result!r}" if self.known else " (outcome unknown)"
        end = "inf" if self.return_ns is None else str(self.return_ns)
        where = "" if self.line is None else f" line {self.line}"
        return (
            f"#{self.index} p{self.process} {self.f} {self.key!r}{arg}{outcome}"
            f" [t={self.call_ns}..{end}]{where}"
        )


def build_operations(events: Iterable[Event]) -> list[Op]:
    """Pair invocations with completions, in invocation order.

    Failed operations are dropped (they did not happen); ``info`` completions and
    invocations still open at the end become operations with an unknown outcome. Raises
    :class:`HistoryError` for histories that break the one-open-operation-per-process
    rule, complete what was never invoked, or run time backwards within an operation.
    """
    slots: list[Op | None] = []
    open_ops: dict[int, tuple[int, Event]] = {}
    for ev in events:
        if ev.type == "invoke":
            if ev.process in open_ops:
                _, prev = open_ops[ev.process]
                where = "" if prev.line is None else f" (line {prev.line})"
                raise HistoryError(
                    f"process {ev.process} invokes {ev.f} while its {prev.f}{where} is still"
                    " open; a process may have at most one operation open at a time",
                    ev.line,
                )
            open_ops[ev.process] = (len(slots), ev)
            slots.append(None)
            continue
        opened = open_ops.pop(ev.process, None)
        if opened is None:
            raise HistoryError(
                f"{ev.type} {ev.f} for process {ev.process}, which has no open invocation",
                ev.line,
            )
        slot, inv = opened
        if ev.f != inv.f or ev.key != inv.key:
            raise HistoryError(
                f"completion {ev.f} {ev.key!r} does not match the open invocation"
                f" {inv.f} {inv.key!r} of process {ev.process}",
                ev.line,
            )
        if ev.time_ns < inv.time_ns:
            raise HistoryError(
                f"completion at time {ev.time_ns} precedes its invocation at {inv.time_ns}",
                ev.line,
            )
        if ev.type == "fail":
            continue
        slots[slot] = _op(slot, inv, ev if ev.type == "ok" else None)
    for slot, inv in open_ops.values():
        slots[slot] = _op(slot, inv, None)
    return [op for op in slots if op is not None]


def _op(index: int, invocation: Event, completion: Event | None) -> Op:
    """The operation of an invocation and its ``ok`` completion (``None``: unknown outcome)."""
    return Op(
        index=index,
        process=invocation.process,
        f=invocation.f,
        key=invocation.key,
        arg=invocation.value,
        result=completion.value if completion is not None else None,
        call_ns=invocation.time_ns,
        return_ns=completion.time_ns if completion is not None else None,
        line=invocation.line,
    )
