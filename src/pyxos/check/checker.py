"""Check a whole history: split it by key, search each key, explain what failed.

Linearizability is local (Herlihy and Wing): a history is linearizable exactly when its
restriction to each object is. Keys of a key-value store are independent objects, so
each key is searched on its own, which turns one exponential problem into many small
ones. The verdict is "violation" if any key has one (that is a proof, whatever happened
elsewhere), else "unknown" if any key ran out of time, else "ok": a history is never
passed unless every key was actually shown linearizable.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pyxos.check.history import Event, Op, build_operations
from pyxos.check.models import KVModel, Model
from pyxos.check.wgl import SearchResult, search_steps

Verdict = Literal["ok", "violation", "unknown"]
#: A key's verdict can also be "skipped": its search was abandoned because another key
#: had already proved the history not linearizable.
KeyVerdict = Literal["ok", "violation", "unknown", "skipped"]

#: Time budget of a whole check when the caller gives none. Generous, because "unknown"
#: is a failed check too; pass ``timeout_s=None`` to search without a limit.
DEFAULT_TIMEOUT_S = 60.0

# How many operations of the prefix an explanation prints (all are in ``to_dict``).
_PREFIX_SHOWN = 8


@dataclass(frozen=True, slots=True)
class Candidate:
    """An operation that could have come next after the longest linearizable prefix.

    ``accepted`` tells why it did not: False when the model rejects it outright in the
    state after the prefix, True when the model accepts it but nothing linearizes the
    remaining operations afterwards.
    """

    op: Op
    accepted: bool


@dataclass(frozen=True, slots=True)
class Violation:
    """Evidence that one key is not linearizable.

    ``prefix`` is the longest linearizable prefix the search found (the one covering the
    most completed operations), ``state`` the model state after it, and ``candidates``
    the operations that could have been linearized next (invoked before the earliest
    pending completion), none of which leads to a linearization of the rest.
    """

    key: str
    prefix: tuple[Op, ...]
    state: str
    candidates: tuple[Candidate, ...]
    completed_ops: int

    def explain(self) -> str:
        """A readable account for the terminal."""
        done = sum(1 for op in self.prefix if op.known)
        lines = [
            f"key {self.key!r} is not linearizable: the longest linearizable prefix found"
            f" covers {done} of its {self.completed_ops} completed operations.",
            f"  state after the longest linearizable prefix: {self.state}",
        ]
        if self.prefix:
            shown = self.prefix[-_PREFIX_SHOWN:]
            skipped = len(self.prefix) - len(shown)
            lines.append(
                "  end of that prefix"
                + (f" ({skipped} earlier operations not shown)" if skipped else "")
                + ":"
            )
            lines.extend(f"    {op.describe()}" for op in shown)
        lines.append("  none of these can come next:")
        for cand in self.candidates:
            why = (
                "accepted, but nothing linearizes the rest afterwards"
                if cand.accepted
                else "impossible in that state"
            )
            lines.append(f"    {cand.op.describe()}  <- {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "key": self.key,
            "state": self.state,
            "completed_ops": self.completed_ops,
            "prefix": [_op_dict(op) for op in self.prefix],
            "candidates": [_op_dict(c.op) | {"accepted": c.accepted} for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key, with the effort it took."""

    key: str
    verdict: KeyVerdict
    ops: int
    unknown_ops: int
    steps: int
    elapsed_s: float
    violation: Violation | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "key": self.key,
            "verdict": self.verdict,
            "ops": self.ops,
            "unknown_ops": self.unknown_ops,
            "steps": self.steps,
            "elapsed_s": round(self.elapsed_s, 6),
            "violation": None if self.violation is None else self.violation.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict for a history, and for each of its keys (smallest key first)."""

    verdict: Verdict
    keys: tuple[KeyResult, ...]
    model: str
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """True only when every key was shown linearizable."""
        return self.verdict == "ok"

    @property
    def violations(self) -> list[Violation]:
        """The evidence for each non-linearizable key."""
        return [k.violation for k in self.keys if k.violation is not None]

    def explain(self) -> str:
        """A readable report: the verdict, then what went wrong, key by key."""
        ops = sum(k.ops for k in self.keys)
        lines = [
            f"{self.verdict.upper()}: {ops} operations on {len(self.keys)} keys"
            f" checked in {self.elapsed_s:.3f}s (model {self.model})"
        ]
        skipped = sum(1 for k in self.keys if k.verdict == "skipped")
        if skipped:
            lines.append(
                f"{skipped} other key(s) not searched to the end (one violation is enough;"
                " pass all_keys / --all-keys to search them)"
            )
        timed_out = [k.key for k in self.keys if k.verdict == "unknown"]
        if timed_out:
            lines.append(
                f"search ran out of time on {len(timed_out)} key(s): "
                + ", ".join(repr(k) for k in timed_out[:20])
                + (" ..." if len(timed_out) > 20 else "")
            )
        lines.extend(v.explain() for v in self.violations)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "verdict": self.verdict,
            "model": self.model,
            "elapsed_s": round(self.elapsed_s, 6),
            "keys": [k.to_dict() for k in self.keys],
        }


def check_operations(
    ops: Iterable[Op],
    model: Model[Any] | None = None,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    all_keys: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Check paired operations (see :func:`~pyxos.check.history.build_operations`).

    The keys' searches run in turns, a slice of steps each, the way Porcupine runs them
    in parallel: one hard key cannot starve the others, and the first violation found,
    by whichever key is quickest to prove it, settles the verdict; the keys still being
    searched are then reported "skipped", unless ``all_keys`` asks to finish them too.
    ``timeout_s`` bounds the whole check (``None``: no bound); keys unfinished by then
    are "unknown". ``clock`` exists so that tests can control time.
    """
    model = KVModel() if model is None else model
    start = clock()
    deadline = None if timeout_s is None else start + timeout_s
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op.f not in model.functions:
            raise ValueError(f"the {model.name} model has no operation {op.f!r}: {op.describe()}")
        if not op.known and op.f in model.read_only:
            continue  # an unknown read neither constrains nor changes anything
        by_key.setdefault(op.key, []).append(op)

    running = deque(
        _KeySearch(key, key_ops, search_steps(model, key_ops))
        for key, key_ops in sorted(by_key.items(), key=lambda kv: (len(kv[1]), kv[0]))
    )
    results: list[KeyResult] = []
    interrupted: KeyVerdict = "unknown"
    while running:
        if deadline is not None and clock() > deadline:
            break
        current = running.popleft()
        began = clock()
        try:
            current.steps = next(current.search)
        except StopIteration as finished:
            found: SearchResult[Any] = finished.value
            current.elapsed_s += clock() - began
            results.append(current.result(model, found))
            if found.verdict == "violation" and not all_keys:
                interrupted = "skipped"
                break
            continue
        current.elapsed_s += clock() - began
        running.append(current)
    for unfinished in running:
        unfinished.search.close()
        results.append(unfinished.unfinished(interrupted))

    results.sort(key=lambda r: (r.ops, r.key))
    verdicts = {r.verdict for r in results}
    verdict: Verdict = (
        "violation" if "violation" in verdicts else "unknown" if "unknown" in verdicts else "ok"
    )
    return CheckResult(verdict, tuple(results), model.name, clock() - start)


class _KeySearch:
    """The search of one key, between its turns."""

    def __init__(
        self, key: str, ops: list[Op], search: Generator[int, None, SearchResult[Any]]
    ) -> None:
        self.key = key
        self.ops = ops
        self.search = search
        self.steps = 0
        self.elapsed_s = 0.0

    def result(self, model: Model[Any], found: SearchResult[Any]) -> KeyResult:
        violation = None
        if found.verdict == "violation":
            violation = _violation(model, self.key, self.ops, found.order, found.state)
        return KeyResult(
            key=self.key,
            verdict=found.verdict,
            ops=len(self.ops),
            unknown_ops=sum(1 for op in self.ops if not op.known),
            steps=found.steps,
            elapsed_s=self.elapsed_s,
            violation=violation,
        )

    def unfinished(self, verdict: KeyVerdict) -> KeyResult:
        return KeyResult(
            key=self.key,
            verdict=verdict,
            ops=len(self.ops),
            unknown_ops=sum(1 for op in self.ops if not op.known),
            steps=self.steps,
            elapsed_s=self.elapsed_s,
        )


def check_history(
    events: Iterable[Event],
    model: Model[Any] | None = None,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    all_keys: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> CheckResult:
    """Check a history of events (as loaded by :func:`~pyxos.check.jsonl.read_history`).

    The model defaults to :class:`~pyxos.check.models.KVModel`, the pyxos store. Raises
    :class:`~pyxos.check.history.HistoryError` (a ``ValueError``) for malformed histories.
    """
    return check_operations(
        build_operations(events), model, timeout_s=timeout_s, all_keys=all_keys, clock=clock
    )


def _violation(
    model: Model[Any], key: str, ops: Sequence[Op], order: Sequence[int], state: object
) -> Violation:
    """Turn the search's longest prefix into an explanation of what could not follow."""
    linearized = set(order)
    pending = [op for i, op in enumerate(ops) if i not in linearized]
    returns = [op.return_ns for op in pending if op.return_ns is not None]
    horizon = min(returns) if returns else None
    candidates = tuple(
        Candidate(op, bool(model.step(state, op)))
        for op in pending
        if horizon is None or op.call_ns <= horizon
    )
    return Violation(
        key=key,
        prefix=tuple(ops[i] for i in order),
        state=model.describe_state(state),
        candidates=candidates,
        completed_ops=sum(1 for op in ops if op.known),
    )


def _op_dict(op: Op) -> dict[str, Any]:
    return {
        "index": op.index,
        "process": op.process,
        "f": op.f,
        "key": op.key,
        "arg": op.arg,
        "result": op.result,
        "known": op.known,
        "call_ns": op.call_ns,
        "return_ns": op.return_ns,
        "line": op.line,
    }
