"""MemoryStorage's power-loss model: what a crash may keep, and what it must."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import MemoryStorage, StorageError

MEMBERS = (1, 2, 3)


def entry(slot: int) -> SlotValue:
    return SlotValue(slot, Ballot(1, 1), (b"%d" % slot,))


def test_synced_writes_survive_every_crash() -> None:
    for seed in range(50):
        store = MemoryStorage(members=MEMBERS)
        store.write(Persist(promised=Ballot(4, 2), entries=[entry(1), entry(2)], must_sync=True))
        store.write(Persist(commit_index=2))
        store.write(Persist(commit_index=1))
        assert store.unsynced_writes == 2
        store.crash(random.Random(seed))
        state, _ = store.load()
        assert state.promised == Ballot(4, 2)
        assert state.entries == [entry(1), entry(2)]
        assert state.commit_index in (0, 1, 2)
        assert store.unsynced_writes == 0


def test_a_crash_keeps_a_random_subset_of_unsynced_writes() -> None:
    outcomes = set()
    for seed in range(200):
        store = MemoryStorage()
        store.write(Persist(entries=[entry(1), entry(2), entry(3)], must_sync=True))
        store.write(Persist(commit_index=1))
        store.write(Persist(commit_index=3))
        store.crash(random.Random(seed))
        outcomes.add(store.load()[0].commit_index)
    # Kept neither, only the first, or the second (with or without the first).
    assert outcomes == {0, 1, 3}


def test_a_prefix_crash_keeps_a_prefix() -> None:
    outcomes = set()
    for seed in range(200):
        store = MemoryStorage()
        store.write(Persist(entries=[entry(1), entry(2)], must_sync=True))
        store.write(Persist(commit_index=2))
        store.write(Persist(commit_index=1))
        store.crash(random.Random(seed), prefix=True)
        outcomes.add(store.load()[0].commit_index)
    assert outcomes == {0, 2, 1}


def test_a_later_sync_makes_earlier_writes_durable() -> None:
    store = MemoryStorage()
    store.write(Persist(commit_index=0, entries=[entry(1)]))
    store.write(Persist(promised=Ballot(1, 1), must_sync=True))
    store.crash(random.Random(1))
    assert store.load()[0].entries == [entry(1)]


def test_snapshots_are_durable_and_partial_transfers_are_not() -> None:
    store = MemoryStorage(members=MEMBERS)
    store.write(Persist(entries=[entry(s) for s in range(1, 6)], must_sync=True))
    store.save_snapshot(3, MEMBERS, b"three")
    writer = store.begin_incoming(9, MEMBERS, 10)
    writer.write_chunk(0, b"01234")
    store.crash(random.Random(0))
    state, info = store.load()
    assert info is not None and info.last_slot == 3
    assert [e.slot for e in state.entries] == [4, 5]
    assert store.read_snapshot() == b"three"
    assert store.begin_incoming(9, MEMBERS, 10).next_offset == 0
    with pytest.raises(ValueError, match="closed"):
        writer.write_chunk(5, b"56789")


def test_injected_sync_failure_then_restart() -> None:
    store = MemoryStorage()
    store.write(Persist(entries=[entry(1)], must_sync=True))
    store.inject_sync_failure()
    with pytest.raises(StorageError, match="injected EIO"):
        store.write(Persist(entries=[entry(2)], must_sync=True))
    with pytest.raises(StorageError, match="failed earlier"):
        store.write(Persist(commit_index=1))
    store.crash(random.Random(3))
    assert not store.failed
    slots = [e.slot for e in store.load()[0].entries]
    assert slots in ([1], [1, 2])  # the failed batch may or may not have reached the disk
    store.write(Persist(entries=[entry(3)], must_sync=True))


def test_close_syncs_and_reopen_continues() -> None:
    store = MemoryStorage()
    store.write(Persist(commit_index=0, entries=[entry(1)]))
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.load()
    store.reopen()
    store.crash(random.Random(0))  # nothing is unsynced after a clean close
    assert store.load()[0].entries == [entry(1)]


@settings(max_examples=100, deadline=None)
@given(
    synced=st.integers(0, 5),
    unsynced=st.lists(st.integers(0, 5), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_prefix_crash_state_is_one_of_the_prefixes(
    synced: int, unsynced: list[int], seed: int
) -> None:
    store = MemoryStorage()
    store.write(
        Persist(entries=[entry(s) for s in range(1, 6)], commit_index=synced, must_sync=True)
    )
    for commit in unsynced:
        store.write(Persist(commit_index=commit))
    store.crash(random.Random(seed), prefix=True)
    possible = [synced, *unsynced]
    commit = store.load()[0].commit_index
    # The survivor is the last write of some prefix: synced, or some unsynced one.
    assert commit in possible


def test_a_crash_keeps_the_membership_history_with_its_batch_or_loses_both() -> None:
    outcomes = set()
    for seed in range(100):
        store = MemoryStorage()
        store.write(Persist(entries=[entry(1)], registry={3: 7}, membership=b"old", must_sync=True))
        store.write(Persist(entries=[entry(2)], registry={3: 0}, membership=b"new"))
        store.crash(random.Random(seed))
        state, _ = store.load()
        outcomes.add((state.membership, len(state.entries), tuple(state.registry.items())))
    assert outcomes == {(b"old", 1, ((3, 7),)), (b"new", 2, ())}
