"""LMDB storage: round trips, compaction, group commit, identity checks, damage detection."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.config import Config
from pyxos.core.messages import InstallSnapshot, SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.core.replica import Replica, Role
from pyxos.storage import (
    CorruptStorageError,
    IdentityMismatchError,
    LmdbStorage,
    StaleSnapshotError,
    Storage,
    StorageError,
    move_aside,
)
from pyxos.storage.records import ENCODER, key_slot, unseal

B1 = Ballot(1, 1)
B2 = Ballot(2, 3)


def entry(slot: int, ballot: Ballot = B1, value: bytes = b"v", chosen: bool = False) -> SlotValue:
    return SlotValue(slot, ballot, (value, b"%d" % slot), chosen)


def open_store(path: Path, **kwargs: object) -> Storage:
    options: dict[str, object] = {"node_id": 1, "cluster_id": "c1", "members": (1, 2, 3)}
    options.update(kwargs)
    return LmdbStorage(path, **options)  # type: ignore[arg-type]


def log_slots(store: Storage) -> list[int]:
    """Every slot with a record in LMDB, bypassing load()'s filtering by snapshot."""
    env = store._env
    assert env is not None
    with env.begin() as txn:
        return [key_slot(k) for k, _ in txn.cursor(db=store._log)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "node1"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Storage]:
    s = open_store(data_dir)
    yield s
    s.close()


def test_fresh_dir_loads_empty_state(store: Storage) -> None:
    assert store.created
    state, snapshot = store.load()
    assert state == HardState.fresh(store.incarnation)
    assert snapshot is None


def test_round_trip_through_close_and_reopen(data_dir: Path) -> None:
    entries = [entry(s, chosen=s <= 3) for s in range(1, 8)]
    with open_store(data_dir) as store:
        store.write(Persist(promised=B1, entries=entries[:4], commit_index=2, must_sync=True))
        store.write(Persist(promised=B2, entries=entries[4:], commit_index=3, must_sync=True))
        before = store.load()
    with open_store(data_dir) as store:
        assert not store.created
        after = store.load()
    assert after == before
    state, snapshot = after
    assert state == HardState(
        B2, entries, 3, 0, None, standing=Standing.JOINING, incarnation=store.incarnation
    )
    assert snapshot is None


def test_entries_are_upserted(store: Storage) -> None:
    store.write(Persist(entries=[entry(1), entry(2)], must_sync=True))
    store.write(Persist(entries=[entry(2, B2, b"new", chosen=True)], must_sync=True))
    state, _ = store.load()
    assert state.entries == [entry(1), entry(2, B2, b"new", chosen=True)]


def test_unsynced_write_is_visible_and_made_durable_by_close(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        store.write(Persist(entries=[entry(1)], must_sync=True))
        store.write(Persist(commit_index=1))  # lazily written, no sync
        assert store.syncs == 1
        assert store.load()[0].commit_index == 1
    assert store.syncs == 2  # close synced the dirty commit
    with open_store(data_dir) as store:
        assert store.load()[0].commit_index == 1


def test_exactly_one_sync_per_write_call(store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = store._sync_env

    def counting() -> None:
        calls.append(1)
        real()

    monkeypatch.setattr(store, "_sync_env", counting)
    big_batch = [entry(s) for s in range(1, 200)]
    store.write(Persist(promised=B1, entries=big_batch, commit_index=10, must_sync=True))
    assert (store.syncs, len(calls)) == (1, 1)
    store.write(Persist(commit_index=11))
    assert (store.syncs, len(calls)) == (1, 1)
    store.write(Persist(entries=[entry(300)], must_sync=True))
    assert (store.syncs, len(calls)) == (2, 2)
    store.write(Persist(must_sync=True))  # nothing to write, but the driver asked
    assert (store.syncs, len(calls)) == (3, 3)
    assert store.last_sync_seconds > 0
    assert store.sync_seconds_total >= store.last_sync_seconds


def test_compaction_deletes_exactly_the_records_at_or_below(store: Storage) -> None:
    store.write(Persist(entries=[entry(s) for s in range(1, 21)], must_sync=True))
    store.save_snapshot(7, (1, 2, 3), b"state at 7")
    assert log_slots(store) == list(range(8, 21))
    # The core installs a received snapshot with compact_through in the same batch.
    snap = InstallSnapshot(2, 12, (1, 2, 3), b"state at 12")
    store.write(Persist(snapshot=snap, compact_through=12, entries=[entry(13, B2)], must_sync=True))
    assert log_slots(store) == list(range(13, 21))
    state, info = store.load()
    assert [e.slot for e in state.entries] == list(range(13, 21))
    assert state.entries[0] == entry(13, B2)
    assert state.snapshot_slot == 12
    assert info is not None and info.last_slot == 12
    assert store.read_snapshot() == b"state at 12"


def test_compaction_of_an_empty_or_short_log(store: Storage) -> None:
    store.save_snapshot(5, (1, 2, 3), b"s")
    assert log_slots(store) == []
    store.write(Persist(entries=[entry(6), entry(7)], must_sync=True))
    store.write(Persist(compact_through=5, must_sync=True))  # already compacted: no-op
    assert log_slots(store) == [6, 7]


def test_entries_covered_by_the_snapshot_are_not_written(store: Storage) -> None:
    store.save_snapshot(5, (1, 2, 3), b"s")
    store.write(Persist(entries=[entry(4), entry(5), entry(6)], must_sync=True))
    assert log_slots(store) == [6]


def test_compaction_beyond_the_snapshot_is_refused(store: Storage) -> None:
    store.write(Persist(entries=[entry(1), entry(2)], must_sync=True))
    with pytest.raises(ValueError, match="beyond the snapshot"):
        store.write(Persist(compact_through=1, commit_index=2, must_sync=True))
    assert not store.failed
    assert log_slots(store) == [1, 2]
    assert store.load()[0].commit_index == 0  # nothing of the refused batch was written


def test_stale_snapshot_in_a_persist_is_ignored(store: Storage) -> None:
    store.save_snapshot(10, (1, 2, 3), b"ten")
    # As after begin_incoming/finish: the core echoes a snapshot that is already installed.
    store.write(
        Persist(snapshot=InstallSnapshot(2, 10, (1, 2, 3), b""), compact_through=10, must_sync=True)
    )
    assert store.read_snapshot() == b"ten"
    with pytest.raises(StaleSnapshotError):
        store.save_snapshot(10, (1, 2, 3), b"again")
    assert not store.failed


def test_wrong_node_cluster_or_members_is_refused(data_dir: Path) -> None:
    open_store(data_dir).close()
    with pytest.raises(IdentityMismatchError, match="belongs to node 1 of cluster 'c1'"):
        open_store(data_dir, node_id=2)
    with pytest.raises(IdentityMismatchError, match="cluster"):
        open_store(data_dir, cluster_id="other")
    with pytest.raises(IdentityMismatchError, match="members"):
        open_store(data_dir, members=(1, 2, 4))
    # Member order does not matter, and None skips the check.
    open_store(data_dir, members=(3, 1, 2)).close()
    open_store(data_dir, members=None).close()


def test_node_must_be_a_member(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="not among the members"):
        open_store(data_dir, node_id=9)


def test_missing_data_dir_with_create_false_is_data_loss(data_dir: Path) -> None:
    with pytest.raises(CorruptStorageError, match="missing"):
        open_store(data_dir, create=False)
    data_dir.mkdir()
    with pytest.raises(CorruptStorageError, match="no lmdb store"):
        open_store(data_dir, create=False)


def test_environment_without_identity_is_corrupt(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        store.write(Persist(promised=B1, must_sync=True))
    env = lmdb.open(str(data_dir / "lmdb"), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.delete(b"identity", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(CorruptStorageError, match="identity record is missing"):
        open_store(data_dir)


def test_environment_without_sub_databases_is_corrupt(data_dir: Path) -> None:
    open_store(data_dir).close()
    for name in ("data.mdb", "lock.mdb"):
        (data_dir / "lmdb" / name).unlink()
    with pytest.raises(CorruptStorageError, match="meta is missing"):
        open_store(data_dir)


def test_snapshots_without_environment_is_corrupt(data_dir: Path) -> None:
    with open_store(data_dir) as store:
        store.save_snapshot(3, (1, 2, 3), b"abc")
    for name in os.listdir(data_dir / "lmdb"):
        (data_dir / "lmdb" / name).unlink()
    (data_dir / "lmdb").rmdir()
    with pytest.raises(CorruptStorageError, match="meta is missing"):
        open_store(data_dir)


def test_garbage_environment_is_corrupt(data_dir: Path) -> None:
    open_store(data_dir).close()
    (data_dir / "lmdb" / "data.mdb").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(CorruptStorageError):
        open_store(data_dir)


def test_undecodable_log_record_is_corrupt(store: Storage) -> None:
    store.write(Persist(entries=[entry(1)], must_sync=True))
    env = store._env
    assert env is not None
    with env.begin(write=True) as txn:
        txn.put((2).to_bytes(8, "big"), b"\xc1not msgpack", db=store._log)
    with pytest.raises(CorruptStorageError):
        store.load()
    assert store.failed


def test_commit_index_over_a_gap_is_corrupt(store: Storage) -> None:
    store.write(Persist(entries=[entry(1), entry(3)], commit_index=3, must_sync=True))
    with pytest.raises(CorruptStorageError, match="covers missing"):
        store.load()


def test_a_data_dir_is_used_by_one_storage_at_a_time(store: Storage, data_dir: Path) -> None:
    with pytest.raises(StorageError, match="already open"):
        open_store(data_dir)


def test_the_map_grows_when_full(data_dir: Path) -> None:
    with open_store(data_dir, map_size=1 << 20) as store:
        value = b"x" * 4096
        for batch in range(8):
            entries = [entry(batch * 64 + i + 1, value=value) for i in range(64)]
            store.write(Persist(entries=entries, must_sync=True))
        assert store.map_size > 1 << 20
        assert len(store.load()[0].entries) == 512
    with open_store(data_dir, map_size=1 << 20) as store:
        assert len(store.load()[0].entries) == 512


def test_map_size_limit_is_fatal(data_dir: Path) -> None:
    with open_store(data_dir, map_size=1 << 20, max_map_size=1 << 20) as store:
        with pytest.raises(StorageError, match="map full"):
            for slot in range(1, 1000):
                store.write(Persist(entries=[entry(slot, value=b"x" * 4096)], must_sync=True))
        assert store.failed


def test_closed_storage_refuses_calls(data_dir: Path) -> None:
    store = open_store(data_dir)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.load()


def test_move_aside_keeps_the_damaged_dir(data_dir: Path) -> None:
    open_store(data_dir).close()
    moved = move_aside(data_dir)
    assert not data_dir.exists()
    assert moved.name.startswith("node1.corrupt-")
    assert (moved / "lmdb").is_dir()
    with open_store(data_dir) as fresh:
        assert fresh.created


def test_records_are_msgpack_slot_values_under_big_endian_keys(store: Storage) -> None:
    store.write(Persist(entries=[entry(258)], must_sync=True))
    env = store._env
    assert env is not None
    key = b"\x00\x00\x00\x00\x00\x00\x01\x02"
    with env.begin() as txn:
        raw = txn.get(key, db=store._log)
    assert raw is not None and raw[4:] == ENCODER.encode(entry(258))
    assert unseal(key, raw, "test") == ENCODER.encode(entry(258))


def drive(replica: Replica, store: Storage, applied: list[bytes]) -> None:
    """A minimal driver: persist (synced as asked), then apply, then advance."""
    while replica.has_ready():
        ready = replica.ready()
        store.write(ready.persist)
        applied.extend(cmd for _, value in ready.committed for cmd in value)
        replica.advance(ready)


def test_a_single_node_replica_restarts_from_storage(data_dir: Path) -> None:
    config = Config.of([1])
    applied: list[bytes] = []
    with open_store(data_dir, members=(1,)) as store:
        replica = Replica(1, config, random.Random(1), state=store.load()[0])
        for _ in range(100):
            replica.tick()
            drive(replica, store, applied)
            if replica.role is Role.LEADER:
                break
        assert replica.role is Role.LEADER
        for i in range(20):
            assert replica.propose(b"cmd%d" % i)
            drive(replica, store, applied)
        commit, promised = replica.commit_index, replica.promised
        assert applied == [b"cmd%d" % i for i in range(20)]
        assert store.syncs >= 1
    with open_store(data_dir, members=(1,)) as store:
        state, _ = store.load()
    restarted = Replica(1, config, random.Random(2), state=state)
    assert restarted.promised == promised
    assert restarted.commit_index == commit
    replayed = [cmd for e in state.entries if e.slot <= commit for cmd in e.value]
    assert replayed == applied


def test_a_bad_slot_changes_nothing(store: Storage) -> None:
    snap = InstallSnapshot(2, 3, (1, 2, 3), b"s")
    with pytest.raises(ValueError, match="out of range"):
        store.write(Persist(promised=B1, entries=[entry(-1)], snapshot=snap, must_sync=True))
    assert not store.failed
    assert store.load() == (HardState.fresh(store.incarnation), None)
    assert list(store.snapshot_dir.iterdir()) == []
