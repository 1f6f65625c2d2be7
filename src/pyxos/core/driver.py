"""Carrying out a replica's batches in the order the core requires: one pure driver.

The asyncio runtime and the simulator both run a :class:`Driver`, so the bookkeeping
between the core and the disk (which batches share a write, when a Promise or an
Accepted may leave, when our own votes count, the lazily written commit index) is the
same code under simulation as in production. It does no I/O: the caller starts the
write it is handed, tells the driver when that write is durable, and sends, applies and
serves what each :class:`Work` lists, in the order of its fields.

Group commit: at most one write is in flight. Batches taken while it runs wait, and all of
them go out merged as the next write (one transaction, one sync), so the number of syncs
follows the disk, not the request rate. Writes become durable in the order the batches
were taken, which is what ``Replica.persisted`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import Ballot
from pyxos.core.membership import Change
from pyxos.core.messages import InstallSnapshot, Message, Value
from pyxos.core.ready import Persist, Ready
from pyxos.core.replica import InvariantViolation, Replica

MAX_WRITES_IN_FLIGHT = 64
"""Batches taken but not yet durable, at most (they share group-committed writes)."""


@dataclass(slots=True)
class Work:
    """What to do now, in field order. Empty lists mean nothing of that kind."""

    send: list[tuple[int, Message]] = field(default_factory=list)
    """Messages that may leave at once (including Promises and Accepteds whose write is
    now durable)."""
    write: Persist | None = None
    """Start this write (one transaction; sync it if ``must_sync``), then call
    :meth:`Driver.written` when it is durable. An empty one is a barrier: it completes
    once every earlier write has."""
    install: InstallSnapshot | None = None
    """Restore the state machine from this (durable) snapshot before applying."""
    committed: list[tuple[int, Value]] = field(default_factory=list)
    reads: list[tuple[int, int]] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)
    snapshots_to_send: list[int] = field(default_factory=list)
    self_accepts: list[tuple[Ballot, int]] = field(default_factory=list)
    """Our own acceptances that became durable (and now count): for observers."""
    changes: list[tuple[int, Change, str | None]] = field(default_factory=list)
    """Membership changes learned chosen (see :class:`~pyxos.core.ready.Ready`)."""
    change_errors: list[tuple[int, str]] = field(default_factory=list)
    removed: str | None = None
    """This node is no longer a member: stop it, saying this."""


class Driver:
    """Feeds one :class:`Replica`'s ``Ready`` batches through a disk; see the module."""

    def __init__(self, replica: Replica, *, max_in_flight: int = MAX_WRITES_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.replica = replica
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        """Batches taken whose write is not yet durable."""
        self._waiting: list[Ready] = []
        """Taken while a write was in flight: they form the next write."""
        self._writing: list[Ready] | None = None
        self._deferred_commit: int | None = None

    @property
    def writing(self) -> bool:
        """Whether a write is in flight (handed out, not yet reported durable)."""
        return self._writing is not None

    def can_take(self) -> bool:
        """Whether :meth:`take` has work to hand out now."""
        return self.in_flight < self.max_in_flight and self.replica.has_ready()

    def take(self) -> Work:
        """Take the replica's next batch and say what to do with it."""
        replica = self.replica
        ready = replica.ready()
        work = Work(
            send=list(ready.messages),
            install=ready.snapshot_install,
            committed=ready.committed,
            reads=ready.reads,
            failed_reads=ready.failed_reads,
            snapshots_to_send=ready.snapshots_to_send,
            changes=ready.changes,
            change_errors=ready.change_errors,
            removed=ready.removed,
        )
        if replica.bugs.ack_before_fsync:
            # The planted bug: promise what is not yet on disk.
            work.send.extend(ready.persisted_messages)
            ready.persisted_messages = []
        self._defer_commit_index(ready.persist)
        persist = ready.persist
        depends = bool(ready.persisted_messages or ready.self_accepts) or (
            ready.self_promise is not None
        )
        if not persist.empty() or persist.must_sync or (depends and self.in_flight):
            # A batch with nothing to write whose messages may rest on an earlier write
            # (an Accepted for a slot the previous batch wrote) waits its turn too.
            self.in_flight += 1
            self._waiting.append(ready)
            if self._writing is None:
                work.write = self._start()
        else:
            self._release(ready, work)
        replica.advance(ready, persisted=False)
        return work

    def written(self) -> Work:
        """The write in flight is durable: release what waited on it, start the next."""
        readies = self._writing
        if readies is None:
            raise InvariantViolation("written() without a write in flight")
        self._writing = None
        self.in_flight -= len(readies)
        work = Work()
        for ready in readies:
            self._release(ready, work)
        if self._waiting:
            work.write = self._start()
        return work

    def _start(self) -> Persist:
        readies, self._waiting = self._waiting, []
        self._writing = readies
        merged = readies[0].persist
        if len(readies) > 1:
            merged = Persist()
            for ready in readies:
                merged.merge(ready.persist)
        return merged

    def _release(self, ready: Ready, work: Work) -> None:
        work.send.extend(ready.persisted_messages)
        work.self_accepts.extend(ready.self_accepts)
        self.replica.persisted(ready)

    def _defer_commit_index(self, persist: Persist) -> None:
        """Fold a batch that only moves the commit index into the next synced one.

        The commit index is written lazily (a restarted node relearns the tail from its
        peers), so it need not cost a transaction of its own; it must never be written
        without the entries it covers, which an earlier or the same batch carries.
        """
        only_commit = (
            not persist.must_sync
            and not persist.entries
            and persist.promised is None
            and persist.compact_through is None
            and persist.snapshot is None
            and persist.standing is None
            and not persist.registry
        )
        if only_commit:
            if persist.commit_index is not None:
                self._deferred_commit = persist.commit_index
            persist.commit_index = None
            return
        if persist.commit_index is None:
            persist.commit_index = self._deferred_commit
        self._deferred_commit = None


def fresh_commits(committed: list[tuple[int, Value]], applied: int) -> list[tuple[int, Value]]:
    """The slots of ``committed`` past ``applied``, checked to follow on from it.

    A snapshot restored meanwhile may already cover some of them (a newer one can finish
    installing while an older one is decoded): those must not be applied twice.
    """
    if not committed or committed[-1][0] <= applied:
        return []
    if committed[0][0] > applied + 1:
        raise InvariantViolation(f"slot {committed[0][0]} would be applied after {applied}")
    if committed[0][0] <= applied:
        return [c for c in committed if c[0] > applied]
    return committed
