"""A node's stable storage in a data dir, whatever engine keeps its records.

Layout of a data dir::

    D/LOCK          flock'ed while open: two processes must never share a node's state
    D/<engine>/     the engine's store: meta records and one log record per slot
    D/snapshots/    snapshot files (see :mod:`pyxos.storage.snapshots`)

The meta records are the identity (cluster id, node id, members, format, incarnation),
``promised``, the commit index, the current snapshot's record, this node's standing
(voter, joining or learner), the registry of its peers' incarnations and the cluster's
membership history (opaque bytes the core encodes, replaced whole by the batch that
carries a new one). Every record is sealed with a checksum
(:func:`pyxos.storage.records.seal`), checked at load.

:class:`Storage` is everything engine-neutral, in three layers of one class: the data dir,
its lock, identity, engine hooks and sticky failures (:mod:`pyxos.storage.datadir`); snapshot
files (:mod:`pyxos.storage.snapshot_store`); and here, writing a batch by the rules of
:mod:`pyxos.storage.batch` (shared with every model of a disk) and loading with the
recovery checks. An engine (:class:`~pyxos.storage.lmdb_store.LmdbStorage`,
:class:`~pyxos.storage.sqlite_store.SqliteStorage`) supplies only a handful of methods:
create, open, read the meta and the log, commit one transaction, close.

Group commit: one ``Persist`` (one batch of the core, however many slots it holds) is
one transaction, synced once if it must be. Batches that need no sync (only a lazily
written commit index) are still committed durably; the runtime folds them into the next
synced batch instead.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

from pyxos.core.ballot import ZERO
from pyxos.core.membership import newest
from pyxos.core.messages import SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.storage import snapshots as files
from pyxos.storage.batch import WritePlan, plan_write, update_registry
from pyxos.storage.datadir import (
    K_COMMIT,
    K_MEMBERSHIP,
    K_PROMISED,
    K_REGISTRY,
    K_SNAPSHOT,
    K_STANDING,
    Transaction,
    move_aside,
)
from pyxos.storage.errors import CorruptStorageError
from pyxos.storage.records import (
    BALLOT_DECODER,
    ENCODER,
    ENTRY_DECODER,
    STANDING_DECODER,
    SnapshotInfo,
    SnapshotRecord,
    StandingRecord,
    decode_u64,
    encode_u64,
    seal,
    slot_key,
    unseal,
)
from pyxos.storage.snapshot_store import SnapshotStore

__all__ = ["Storage", "move_aside"]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding a long log.

    Loading a million entries creates millions of small container objects, and the
    collector, triggered by every 700 new ones, rescans them all again and again: pausing
    it makes ``load`` about three times faster. Nothing here creates reference cycles.
    (Plain ``bytes`` values are also faster than ``buffers=True`` memoryviews, which cost
    one object each.)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Storage(SnapshotStore):
    """A node's stable storage in a data dir; see the module docstring for the layout.

    Every method is thread-safe (one lock; the engines' write transactions are serialized),
    and the snapshot bytes are written outside the lock, so producing a large snapshot does
    not stall :meth:`write`. Any I/O error is fatal and sticky: see
    :mod:`pyxos.storage.errors`.

    ``members``, when given, must equal the membership recorded in the data dir (that of
    the current snapshot, or the one given at creation); pass ``None`` to skip the check.
    With ``create=False`` a missing data dir is a :class:`CorruptStorageError` (a node that
    had state and lost it must not come back with a blank one and vote).
    """

    # ------------------------------------------------------------------ writing

    def write(self, persist: Persist) -> None:
        """Write one batch of the core's state changes in ONE transaction, then sync once.

        In order: ``promised``; the entries (upserted, except those the snapshot covers);
        the commit index; the snapshot's meta record; the standing, the registry (a node's
        later incarnation overwrites its entry, ``0`` deletes it) and the membership history
        (replaced whole, if given); deletion of every log record at or below
        ``compact_through`` (and below a newly installed snapshot). Then exactly one
        ``env.sync`` if ``persist.must_sync``, so the driver may send the messages that
        depend on the batch as soon as this returns.

        A snapshot in ``persist`` that is not newer than the current one is ignored (it
        was installed already, e.g. through :meth:`begin_incoming`); a newer one has its
        bytes written to a file (with its own file and directory fsyncs) first.
        ``compact_through`` beyond the snapshot is a ``ValueError``: the log below it
        would be lost with nothing covering it.
        """
        self._check_open()
        plan_write(persist, self.snapshot_slot)  # a bad compaction raises before any work
        if persist.entries:
            # Checked before anything is written, so a bad slot changes nothing.
            slot_key(min(e.slot for e in persist.entries))
            slot_key(max(e.slot for e in persist.entries))
        if persist.empty():
            if persist.must_sync:
                with self._lock:
                    self._sync()
            return
        snap = persist.snapshot
        staged: tuple[Path, int, int] | None = None
        if snap is not None and snap.last_slot > self.snapshot_slot:
            staged = self._stage(snap.data)  # outside the lock: it may be large
        try:
            with self._lock:
                self._latch.check()
                # Planned again under the lock: a snapshot may have landed meanwhile.
                plan = plan_write(persist, self.snapshot_slot)
                record: SnapshotRecord | None = None
                if staged is not None and plan.snapshot is not None:
                    path, size, crc = staged
                    s = plan.snapshot
                    record = self._place(path, s.last_slot, s.members, size, crc, s.ballot)
                    staged = None
                encode = ENCODER.encode
                self._engine_commit(
                    Transaction(
                        "writing a batch",
                        meta=self._meta_rows(plan, record),
                        rows=[(e.slot, seal(slot_key(e.slot), encode(e))) for e in plan.entries],
                        delete_through=plan.delete_through,
                    )
                )
                if record is not None:
                    self._make_current(record)
                if persist.must_sync:
                    self._sync()
        finally:
            if staged is not None:
                with contextlib.suppress(OSError):
                    staged[0].unlink()

    def _meta_rows(
        self, plan: WritePlan, snapshot: SnapshotRecord | None
    ) -> list[tuple[bytes, bytes]]:
        """The sealed meta records a batch changes."""
        encode = ENCODER.encode
        out: list[tuple[bytes, bytes]] = []
        if plan.promised is not None:
            out.append((K_PROMISED, seal(K_PROMISED, encode(plan.promised))))
        if plan.commit_index is not None:
            out.append((K_COMMIT, seal(K_COMMIT, encode_u64(plan.commit_index))))
        if snapshot is not None:
            out.append((K_SNAPSHOT, seal(K_SNAPSHOT, encode(snapshot))))
        if plan.standing is not None:
            record = StandingRecord(plan.standing[0].value, plan.standing[1])
            out.append((K_STANDING, seal(K_STANDING, encode(record))))
        if plan.registry:
            merged = dict(self._registry)
            update_registry(merged, plan.registry)
            if merged != self._registry:
                self._registry = merged
                out.append((K_REGISTRY, seal(K_REGISTRY, encode(merged))))
        if plan.membership is not None:
            out.append((K_MEMBERSHIP, seal(K_MEMBERSHIP, plan.membership)))
        return out

    # ------------------------------------------------------------------ reading

    def load(self, *, verify_snapshot: bool = True) -> tuple[HardState, SnapshotInfo | None]:
        """What a replica needs after a restart, and where the snapshot's bytes are.

        The entries are those above the snapshot, in slot order. With ``verify_snapshot``
        the snapshot file's checksum is checked (a sequential read of the file); its size
        is always checked. Damage of any kind raises :class:`CorruptStorageError`.
        """
        self._check_open()
        damage: tuple[type[BaseException], ...] = (ValueError, *self.CORRUPT_ERRORS)
        failures: tuple[type[BaseException], ...] = (*self.ENGINE_ERRORS, OSError)
        with self._lock:
            self._latch.check()
            snapshot = self._snapshot
            floor = snapshot.last_slot if snapshot is not None else 0
            where = str(self.data_file)
            try:
                with _gc_paused():
                    self._meta_records = self._engine_meta()
                    raw = self._record(K_PROMISED)
                    promised = BALLOT_DECODER.decode(raw) if raw is not None else ZERO
                    raw = self._record(K_COMMIT)
                    commit_index = decode_u64(raw) if raw is not None else 0
                    raw = self._record(K_STANDING)
                    standing = STANDING_DECODER.decode(raw) if raw is not None else None
                    membership = self._record(K_MEMBERSHIP)
                    decode = ENTRY_DECODER.decode
                    entries: list[SlotValue] = [
                        decode(unseal(slot_key(slot), v, where))
                        for slot, v in self._engine_log(floor)
                    ]
                previous = floor
                for entry in entries:
                    if entry.slot <= previous:
                        raise ValueError(f"log out of order at slot {entry.slot}")
                    previous = entry.slot
                covered = commit_index - floor
                if covered > 0 and (
                    len(entries) < covered or entries[covered - 1].slot != commit_index
                ):
                    raise ValueError(f"commit index {commit_index} covers missing log slots")
                if snapshot is not None:
                    files.verify_file(snapshot, checksum=verify_snapshot)
            except CorruptStorageError as exc:
                raise self._latch.fail("loading", exc, CorruptStorageError) from exc
            except damage as exc:
                raise self._latch.fail("loading", exc, CorruptStorageError) from exc
            except failures as exc:
                raise self._latch.fail("loading", exc) from exc
        if snapshot is not None:
            promised = max(promised, snapshot.ballot)
        state = HardState(
            promised=promised,
            entries=entries,
            commit_index=commit_index,
            snapshot_slot=floor,
            members=snapshot.members if snapshot is not None else None,
            standing=Standing(standing.standing) if standing else Standing.JOINING,
            incarnation=self.incarnation,
            registry=dict(self._registry),
            superseded=standing.superseded if standing else None,
            membership=newest(membership, snapshot.membership if snapshot is not None else None),
        )
        return state, snapshot
