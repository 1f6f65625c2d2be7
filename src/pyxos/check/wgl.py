"""The Wing-Gong / Lowe linearizability search for one partition of a history.

This is the algorithm Porcupine uses. The history becomes a doubly linked list of call
and return entries in time order. At any point of the search the operations whose calls
come before the first return entry still in the list are exactly the ones that may be
linearized next: everything else was invoked after some pending operation returned. The
search linearizes one of them if the model accepts it ("lifting" its two entries out of
the list), backtracks when nothing fits ("unlifting" them again), and succeeds once every
completed operation is linearized. A cache of configurations already explored, a pair
(set of linearized operations as a bitset in a Python int, model state), keeps the search
from exploring the same configuration twice, which is what makes it practical.

Two reductions on top of Porcupine's algorithm cut the search without losing anything:

- A completed read-only candidate that the model accepts in the current state is
  linearized at once, as the only child. It changes nothing, and every pending operation
  returns after the read was invoked, so any linearization with the read somewhere later
  stays valid with the read moved to the front. Reads stop multiplying the orders.
- Operations with an unknown outcome have no return entry: their return is at +infinity,
  so they never force anything, and the search ends as soon as all *completed*
  operations are linearized; unknown operations left over simply never took effect. They
  live in a list of their own, so walking the candidates does not wade through them.

Unknown operations could still make the search exponential (n pending unknown writes
can be applied in 2**n subsets). Since leaving one unapplied is always allowed:

- configurations are compared by dominance, not only equality: having applied *fewer*
  unknown operations, with the same completed operations and the same state, is at least
  as good, so a configuration is pruned when one with a subset of its unknown operations
  was seen (the cache maps (completed-bitset, state) to the minimal unknown-bitsets);
- completed candidates are tried before unknown ones, so configurations with fewer
  unknown operations applied tend to be seen first;
- once the completed candidates of a configuration are exhausted, all its unknown
  candidates are entered into the cache before any is explored, so that deeper down,
  "apply U1 then U2" is pruned by the still-pending sibling "apply U2".

The search is iterative (an explicit stack of frames), so long histories do not hit
Python's recursion limit. It is a generator that pauses every few thousand steps, so
that the caller can enforce a deadline (a hard history ends with "unknown" rather than
hanging) and run the searches of several keys in turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeAlias, TypeVar

from pyxos.check.history import Op
from pyxos.check.models import Model

S = TypeVar("S", bound=Hashable)

SearchVerdict = Literal["ok", "violation", "unknown"]

#: How many search steps :func:`search_steps` takes between two yields (a few ms).
SLICE_STEPS = 2048

# At most this many cached configurations, about 600 MB; then the cache starts afresh.
_CACHE_LIMIT = 2_000_000

# At most this many remembered model answers (bounds memory).
_MEMO_LIMIT = 1 << 16

# What a frame is doing with its children (see _Frame).
_PHASE_READ = 0
_PHASE_KNOWN = 1
_PHASE_UNKNOWN = 2
_PHASE_DONE = 3

# The linearization so far, newest first, as a cons list of operation indices: pushing a
# frame is O(1) and the longest prefix seen can be kept without copying.
_Path: TypeAlias = "tuple[int, _Path] | None"


@dataclass(frozen=True, slots=True)
class SearchResult(Generic[S]):
    """What the search found for one partition.

    ``order`` lists indices into the partition's operations: for "ok", a linearization of
    every completed operation (plus the unknown ones it chose to apply); for "violation",
    the longest linearizable prefix found, i.e. the one covering the most completed
    operations; empty for "unknown". ``state`` is the model state after ``order``.
    ``steps`` counts search steps, a machine-independent measure of effort.
    """

    verdict: SearchVerdict
    order: tuple[int, ...]
    state: S
    steps: int


class _Frame(Generic[S]):
    """One configuration on the search stack, and how far its children have been tried.

    ``entry``, ``prev_state`` and ``prev_path`` undo the step that created the
    configuration. Its children are tried in phases: first a completed read-only
    candidate that the model accepts, which if found is the *only* child; then the other
    completed candidates, walking the list (``cursor``, and the model's answers ``alts``
    for it, tried from ``alt``); then ``unknown``, the unknown candidates entered into the
    cache up front; then the frame is done.
    """

    __slots__ = ("alt", "alts", "cursor", "entry", "phase", "prev_path", "prev_state", "unknown")

    def __init__(self, entry: int, prev_state: S, prev_path: _Path, cursor: int) -> None:
        self.entry = entry
        self.prev_state = prev_state
        self.prev_path = prev_path
        self.cursor = cursor
        self.phase = _PHASE_READ
        self.alts: Sequence[S] | None = None
        self.alt = 0
        self.unknown: list[tuple[int, S, int]] = []


def search(
    model: Model[S],
    ops: Sequence[Op],
    *,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult[S]:
    """Decide whether ``ops`` (one partition) is linearizable with respect to ``model``.

    ``deadline`` is a time on ``clock``; when the search runs past it the verdict is
    "unknown". The clock is a parameter so that tests can make time pass deterministically.
    """
    if deadline is not None and clock() > deadline:
        return SearchResult("unknown", (), model.init(), 0)
    steps = search_steps(model, ops)
    while True:
        try:
            taken = next(steps)
        except StopIteration as finished:
            result: SearchResult[S] = finished.value
            return result
        if deadline is not None and clock() > deadline:
            steps.close()
            return SearchResult("unknown", (), model.init(), taken)


def search_steps(model: Model[S], ops: Sequence[Op]) -> Generator[int, None, SearchResult[S]]:
    """The search as a generator, to be run a slice at a time.

    It yields the number of steps taken so far every :data:`SLICE_STEPS` steps and
    returns the :class:`SearchResult`. Running several partitions' searches in turns lets
    the checker stop them all as soon as one finds a violation, whichever is quickest,
    and enforce a deadline, without threads.
    """
    ops = [model.prepare(op) for op in ops]
    state: S = model.init()
    n = len(ops)
    known = [op.return_ns is not None for op in ops]
    is_read = [known[i] and op.f in model.read_only for i, op in enumerate(ops)]
    bit = [0] * n
    n_known = n_unknown = 0
    for i in range(n):
        if known[i]:
            bit[i] = 1 << n_known
            n_known += 1
        else:
            bit[i] = 1 << n_unknown
            n_unknown += 1
    if n_known == 0:
        return SearchResult("ok", (), state, 0)
    has_unknown = n_unknown > 0

    # The time line: calls sort before returns at the same instant, so that operations
    # whose times touch count as concurrent (the generous reading, never a false alarm).
    timeline: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        timeline.append((op.call_ns, 0, i))
        if op.return_ns is not None:
            timeline.append((op.return_ns, 1, i))
    timeline.sort()

    # Entries are numbered 1..m by time, so comparing entry numbers compares times. Two
    # doubly linked lists share the arrays: the main one (head 0, tail m + 1) holds the
    # completed operations' calls and returns, the other (head m + 2, tail m + 3) the
    # unknown operations' calls. Both tails compare after every entry.
    m = len(timeline)
    head, tail, uhead, utail = 0, m + 1, m + 2, m + 3
    is_return = [False] * (m + 4)
    is_return[tail] = True
    entry_op = [-1] * (m + 4)
    partner = [0] * (m + 4)  # completed call entry -> its return entry
    call_entry = [0] * n
    nxt = [0] * (m + 4)
    prv = [0] * (m + 4)
    last, ulast = head, uhead
    for pos, (_, returning, i) in enumerate(timeline, start=1):
        entry_op[pos] = i
        if returning:
            is_return[pos] = True
            partner[call_entry[i]] = pos
        else:
            call_entry[i] = pos
        if known[i]:
            nxt[last], prv[pos], last = pos, last, pos
        else:
            nxt[ulast], prv[pos], ulast = pos, ulast, pos
    nxt[last], prv[tail] = tail, last
    nxt[ulast], prv[utail] = utail, ulast

    kbits = 0  # completed operations linearized so far
    ubits = 0  # unknown operations applied so far
    done = 0
    path: _Path = None
    # (kbits, state) -> minimal ubits seen; a plain set when nothing is unknown.
    dominance: dict[tuple[int, S], list[int]] = {(0, state): [0]}
    seen: set[tuple[int, S]] = {(0, state)}
    best_done, best_path, best_state = -1, path, state
    # The model's answers for unknown operations, which are offered in the same states
    # over and over (not worth it for completed ones: they are offered far less).
    answers: dict[tuple[int, S], Sequence[S]] = {}

    frames: list[_Frame[S]] = [_Frame(-1, state, None, nxt[head])]
    steps = 0
    while True:
        steps += 1
        if steps % SLICE_STEPS == 0:
            yield steps
            if len(dominance) + len(seen) > _CACHE_LIMIT:
                # Forgetting is safe (the cache only prunes); running out of memory is not.
                dominance.clear()
                seen.clear()
        frame = frames[-1]
        child_entry = -1
        child_state = state
        child_k = kbits
        child_u = ubits

        if frame.phase == _PHASE_READ:
            # An accepted completed read goes first, alone (see the module docstring).
            frame.phase = _PHASE_KNOWN
            e = nxt[head]
            while not is_return[e]:
                i = entry_op[e]
                if not is_read[i]:
                    e = nxt[e]
                    continue
                if model.step(state, ops[i]):
                    frame.phase = _PHASE_DONE
                    ck = kbits | bit[i]
                    if has_unknown:
                        admitted = _admit(dominance, (ck, state), ubits)
                    else:
                        admitted = (ck, state) not in seen
                        seen.add((ck, state))
                    if admitted:
                        child_entry, child_k = e, ck
                    break
                e = nxt[e]

        if child_entry < 0 and frame.phase == _PHASE_KNOWN:
            # Next completed candidate, walking the list up to its first return entry.
            # Reads are skipped: the read phase found that none fits this state.
            e = frame.cursor
            while True:
                alts = frame.alts
                if alts is None:
                    if is_return[e]:
                        break
                    i = entry_op[e]
                    if is_read[i]:
                        e = nxt[e]
                        continue
                    alts = frame.alts = model.step(state, ops[i])
                    frame.alt = 0
                ck = kbits | bit[entry_op[e]]
                while frame.alt < len(alts):
                    ns = alts[frame.alt]
                    frame.alt += 1
                    if has_unknown:
                        if not _admit(dominance, (ck, ns), ubits):
                            continue
                    else:
                        key = (ck, ns)
                        if key in seen:
                            continue
                        seen.add(key)
                    child_entry, child_state, child_k = e, ns, ck
                    break
                if child_entry >= 0:
                    break
                frame.alts = None
                e = nxt[e]
            frame.cursor = e
            if child_entry < 0:
                frame.phase = _PHASE_DONE
                if has_unknown:
                    # The unknown candidates: invoked before the first return (``e``).
                    candidates: list[tuple[int, S, int]] = []
                    u = nxt[uhead]
                    while u < e:
                        i = entry_op[u]
                        cu = ubits | bit[i]
                        memo_key = (i, state)
                        alts = answers.get(memo_key)
                        if alts is None:
                            if len(answers) >= _MEMO_LIMIT:
                                answers.clear()
                            alts = answers[memo_key] = model.step(state, ops[i])
                        for ns in alts:
                            if _admit(dominance, (kbits, ns), cu):
                                candidates.append((u, ns, cu))
                        u = nxt[u]
                    if candidates:
                        frame.unknown = candidates
                        frame.alt = 0
                        frame.phase = _PHASE_UNKNOWN

        if child_entry < 0 and frame.phase == _PHASE_UNKNOWN:
            pending = frame.unknown
            while frame.alt < len(pending):
                e, ns, cu = pending[frame.alt]
                frame.alt += 1
                # Skip it if a configuration dominating it was entered since. (It is
                # missing altogether if the cache was cleared; then it is entered again.)
                key = (kbits, ns)
                if cu in dominance.get(key, ()) or _admit(dominance, key, cu):
                    child_entry, child_state, child_u = e, ns, cu
                    break
            if child_entry < 0:
                frame.phase = _PHASE_DONE

        if child_entry < 0:
            # Every continuation of this configuration failed: undo the step into it.
            if len(frames) == 1:
                return SearchResult("violation", _unwind(best_path), best_state, steps)
            frames.pop()
            e = frame.entry
            i = entry_op[e]
            if known[i]:
                r = partner[e]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                kbits ^= bit[i]
                done -= 1
            else:
                ubits ^= bit[i]
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            state = frame.prev_state
            path = frame.prev_path
            continue

        # Step into the child configuration: lift the call (and its return) out.
        e = child_entry
        i = entry_op[e]
        frames.append(_Frame(e, state, path, -1))
        path = (i, path)
        state = child_state
        kbits = child_k
        ubits = child_u
        p, q = prv[e], nxt[e]
        nxt[p] = q
        prv[q] = p
        if known[i]:
            r = partner[e]
            p, q = prv[r], nxt[r]
            nxt[p] = q
            prv[q] = p
            done += 1
            if done == n_known:
                return SearchResult("ok", _unwind(path), state, steps)
            if done > best_done:
                best_done, best_path, best_state = done, path, state
        frames[-1].cursor = nxt[head]


def _admit(dominance: dict[tuple[int, S], list[int]], key: tuple[int, S], ubits: int) -> bool:
    """Enter configuration (key, ubits) unless one with a subset of ``ubits`` is known.

    Entries that the new one dominates are dropped, so each list stays an antichain.
    """
    minimal = dominance.get(key)
    if minimal is None:
        dominance[key] = [ubits]
        return True
    for u in minimal:
        if u & ~ubits == 0:
            return False
    minimal[:] = [u for u in minimal if ubits & ~u]
    minimal.append(ubits)
    return True


def _unwind(path: _Path) -> tuple[int, ...]:
    """The operations of a cons-list path, oldest first."""
    order: list[int] = []
    while path is not None:
        order.append(path[0])
        path = path[1]
    order.reverse()
    return tuple(order)
