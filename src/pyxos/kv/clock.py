"""Where a node's wall clock meets the log: the stamp on a write, and the clock ticks.

The state machine never reads a clock (:mod:`pyxos.kv.keyspace`); the node around it does,
in three places, and these functions are those decisions with the clock passed in. The
Redis server passes its wall clock and the simulator each node's simulated one, so what the
simulator checks is what the server does:

- :func:`write_stamp`: a write is stamped with the clock of the node that takes it from its
  client, unless its result cannot depend on time (a plain ``SET k v``);
- :func:`read_needs_tick`: a read that touches a key whose time has come by the reading
  node's clock, but not yet by the replicated one, must first put a clock tick through the
  log (:func:`clock_tick`), which deletes the key on every replica; only then may the node
  answer, so "gone" is always a decision of the log and no later read sees the key again;
- :func:`leader_tick`: the leader proposes a tick while some key is due by its clock, so
  an idle cluster still expires keys (the replicated deletes of due keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyxos.kv.commands import CommandSpec
from pyxos.kv.reads import LocalReads
from pyxos.kv.request import encode_request

__all__ = ["clock_tick", "leader_tick", "read_needs_tick", "write_stamp"]


def write_stamp(argv: Sequence[bytes], spec: CommandSpec, clock: Callable[[], int]) -> int:
    """The time stamp of a write: 0 when its result cannot depend on time (the clock is
    then not even read, which keeps a plain ``SET`` cheap), else ``clock()`` in ms."""
    return 0 if len(argv) <= spec.untimed_argc else clock()


def clock_tick(clock: int) -> bytes:
    """A log entry that only advances the replicated clock to ``clock`` (ms), deleting every
    key due by then on every replica."""
    return encode_request((), time=clock)


def read_needs_tick(kv: LocalReads, argv: Sequence[bytes], db: int, clock: int) -> bool:
    """Whether a read of ``argv`` in database ``db`` at the reading node's ``clock`` must
    wait for a :func:`clock_tick` of ``clock`` to be applied before it is answered."""
    return kv.expiring and kv.due(argv, db, clock)


def leader_tick(kv: LocalReads, clock: int) -> bytes | None:
    """The tick a leader whose clock reads ``clock`` should propose now, or None while no
    key is due by it."""
    due = kv.next_expiry()
    if due is None or due > clock:
        return None
    return clock_tick(clock)
