"""The key-value workload's oracle: replicas agree, and a key reported gone stays gone.

Three checks, each fed by the simulator as things happen (and each testable on a made-up
trace):

* **digests**: every replica that has applied the log through index ``i`` holds the same
  state (:meth:`~pyxos.kv.statemachine.KVStateMachine.digest`), whether it got there by
  applying slots or by installing a snapshot. Time enters only through the log, so a
  replica that expires a key by its own clock shows here first.
* **no resurrection**: once a linearizable read reported a key gone (``GET`` nil, ``TTL``
  -2, ``EXISTS`` 0), no read that began after it reports the key present unless a write
  that can create it (a ``SET`` without ``XX``) was applied after the state the "gone"
  read was served from; and a ``GET`` never returns a value that was set at or before that
  state. Every write sets a value of its own, so a value names its write. Positions are
  log indexes: a read is served from the state after applying some index, which the
  simulator knows, as it knows the slot each write was first applied in.
* **the edge**: a read reports a key present only while its expiry time, in the reading
  replica's state, is ahead of the reading node's clock (a due key must first be deleted
  through the log, see :mod:`pyxos.kv.clock`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["ALL_CHECKS", "ExpiryOracle"]

ALL_CHECKS = frozenset({"digests", "resurrection", "edge"})


@dataclass(slots=True)
class _KeyHistory:
    set_at: dict[bytes, int] = field(default_factory=dict)
    """value -> the slot of the write that set it (each value is set by one write)."""
    creating: list[int] = field(default_factory=list)
    """Slots of writes that may create the key, ascending."""
    gone_served: list[int] = field(default_factory=list)
    """Ticks at which reads reporting the key gone were served, ascending..."""
    gone_max: list[tuple[int, str]] = field(default_factory=list)
    """...and, up to each, the highest position any of them was served from (with which
    read that was)."""


@dataclass(slots=True)
class ExpiryOracle:
    checks: frozenset[str] = ALL_CHECKS
    violation: str | None = None
    digests: dict[int, tuple[int, str]] = field(default_factory=dict)
    """index -> (the first node seen there, its digest)."""
    keys: dict[bytes, _KeyHistory] = field(default_factory=dict)
    compared: int = 0

    def fail(self, what: str) -> None:
        if self.violation is None:
            self.violation = what

    # ------------------------------------------------------------------ digests

    def state(self, node: int, index: int, digest: str) -> None:
        """Replica ``node``'s state digest after applying through ``index``."""
        if "digests" not in self.checks:
            return
        first = self.digests.get(index)
        if first is None:
            self.digests[index] = (node, digest)
        elif first[1] != digest:
            self.fail(
                f"replicas diverged at index {index}: node {first[0]} has state "
                f"{first[1][:12]}, node {node} has {digest[:12]}"
            )
        else:
            self.compared += 1

    # ------------------------------------------------------------------ writes

    def wrote(self, key: bytes, value: bytes | None, slot: int, creates: bool) -> None:
        """A write of ``key`` was first applied in ``slot``: it sets ``value`` (None: it
        sets no value, as EXPIRE or DEL), and may create the key (``creates``)."""
        history = self.keys.setdefault(key, _KeyHistory())
        if value is not None:
            history.set_at[value] = slot
        if creates:
            bisect.insort(history.creating, slot)

    # ------------------------------------------------------------------ reads

    def read(
        self,
        what: str,
        key: bytes,
        present: bool,
        value: bytes | None,
        started: int,
        served: int,
        position: int,
    ) -> None:
        """A linearizable read ``what`` of ``key``, begun at tick ``started``, served at
        ``served`` from the state after index ``position``, reported the key ``present``
        (with ``value``, for GET)."""
        if "resurrection" not in self.checks:
            return
        history = self.keys.setdefault(key, _KeyHistory())
        if not present:
            gone = history.gone_max
            history.gone_served.append(served)
            if not gone or position > gone[-1][0]:
                gone.append((position, f"{what} begun at tick {started}, served at {served}"))
            else:
                gone.append(gone[-1])
            return
        set_at = None
        if value is not None:
            set_at = history.set_at.get(value)
            if set_at is None:
                self.fail(f"{what} returned {value!r}, which no write set")
                return
        # Reads reporting the key gone that were served before this one began.
        i = bisect.bisect_left(history.gone_served, started)
        if i == 0:
            return
        gone_at, gone_read = history.gone_max[i - 1]
        j = bisect.bisect_right(history.creating, position)
        created = history.creating[j - 1] if j else 0
        if gone_at >= created or (set_at is not None and gone_at >= set_at):
            old = f" its old value {value!r} (set at index {set_at})" if value else " it present"
            self.fail(
                f"resurrection of {key!r}: {gone_read} reported it gone at index {gone_at}, "
                f"then {what} begun at tick {started} "
                f"(served from index {position}) reported{old}, and no write since "
                f"could create it"
            )

    def edge(self, node: int, what: str, key: bytes, expires_at: int | None, clock: int) -> None:
        """A read on ``node`` reported ``key`` present, with ``expires_at`` in that node's
        state, at the node's ``clock``."""
        if "edge" in self.checks and expires_at is not None and expires_at <= clock:
            self.fail(
                f"node {node}: {what} reported {key!r} present at clock {clock}, "
                f"{clock - expires_at} ms past its expiry time {expires_at}"
            )
