"""The behaviour both storages promise (StorageBackend), run against each of them."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import InstallSnapshot, SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.storage import (
    ENGINES,
    MemoryStorage,
    SnapshotVerifyError,
    StaleSnapshotError,
    Storage,
    StorageBackend,
    StorageError,
    open_storage,
)

MEMBERS = (1, 2, 3)


class Harness:
    """A storage plus a way to restart the node on the same (cleanly closed) disk."""

    def __init__(self, open_: Callable[[], StorageBackend], reopen: Callable[[], None]) -> None:
        self._open = open_
        self._reopen = reopen
        self.store = open_()

    def restart(self) -> StorageBackend:
        self.store.close()
        self._reopen()
        self.store = self._open()
        return self.store


@pytest.fixture(params=["lmdb", "sqlite", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param in ENGINES:
        engine = request.param
        h = Harness(
            lambda: open_storage(
                engine, tmp_path / "d", node_id=1, cluster_id="c", members=MEMBERS
            ),
            lambda: None,
        )
    else:
        memory = MemoryStorage(node_id=1, cluster_id="c", members=MEMBERS)
        h = Harness(lambda: memory, memory.reopen)
    yield h
    h.store.close()


def entry(slot: int, chosen: bool = False) -> SlotValue:
    return SlotValue(slot, Ballot(2, 1), (b"cmd%d" % slot,), chosen)


def test_round_trip_across_a_restart(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(promised=Ballot(2, 1), entries=[entry(1, True), entry(2)], must_sync=True))
    store.write(Persist(commit_index=1))
    expected = HardState(
        Ballot(2, 1),
        [entry(1, True), entry(2)],
        1,
        0,
        None,
        standing=Standing.JOINING,
        incarnation=store.load()[0].incarnation,
    )
    assert expected.incarnation > 0
    assert store.load() == (expected, None)
    assert harness.restart().load() == (expected, None)


def test_one_sync_per_write_call(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(entries=[entry(s) for s in range(1, 65)], must_sync=True))
    store.write(Persist(commit_index=3))
    store.write(Persist(promised=Ballot(3, 2), must_sync=True))
    assert store.syncs == 2


def test_compaction_through_a_snapshot(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(entries=[entry(s, True) for s in range(1, 11)], must_sync=True))
    store.write(Persist(commit_index=10))
    info = store.save_snapshot(6, MEMBERS, b"six")
    assert (info.last_slot, info.size, info.checksum) == (6, 3, zlib.crc32(b"six"))
    store.write(Persist(compact_through=6))
    state, snapshot = harness.restart().load()
    assert [e.slot for e in state.entries] == [7, 8, 9, 10]
    assert (state.snapshot_slot, state.members, state.commit_index) == (6, MEMBERS, 10)
    assert snapshot is not None and snapshot.checksum == info.checksum
    assert harness.store.read_snapshot() == b"six"


def test_install_through_persist(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(entries=[entry(s) for s in range(1, 6)], must_sync=True))
    snap = InstallSnapshot(2, 3, MEMBERS, b"three")
    store.write(Persist(snapshot=snap, compact_through=3, must_sync=True))
    state, info = store.load()
    assert [e.slot for e in state.entries] == [4, 5]
    assert info is not None and info.last_slot == 3
    with pytest.raises(ValueError, match="beyond the snapshot"):
        store.write(Persist(compact_through=4))
    assert not store.failed


def test_chunked_incoming_with_resume(harness: Harness) -> None:
    store = harness.store
    data = bytes(range(256)) * 1000
    checksum = zlib.crc32(data)
    writer = store.begin_incoming(40, MEMBERS, len(data), checksum)
    for offset in range(0, 100_000, 10_000):
        assert writer.write_chunk(offset, data[offset : offset + 10_000]) == offset + 10_000
    writer = store.begin_incoming(40, MEMBERS, len(data), checksum)  # after a disconnect
    assert writer.next_offset == 100_000
    assert writer.last_slot == 40 and writer.size == len(data)
    offset = writer.next_offset
    while offset < len(data):
        offset = writer.write_chunk(offset, data[offset : offset + 30_000])
    info = writer.finish()
    assert (info.last_slot, info.members, info.checksum) == (40, MEMBERS, checksum)
    reader = store.open_snapshot()
    assert reader is not None
    assert reader.read(1000, 10) == data[1000:1010]
    reader.close()
    assert harness.restart().read_snapshot() == data


def test_damaged_and_stale_incoming(harness: Harness) -> None:
    store = harness.store
    writer = store.begin_incoming(5, MEMBERS, 4, zlib.crc32(b"good"))
    writer.write_chunk(0, b"evil")
    with pytest.raises(SnapshotVerifyError):
        writer.finish()
    assert store.snapshot is None
    store.save_snapshot(5, MEMBERS, b"good")
    with pytest.raises(StaleSnapshotError):
        store.begin_incoming(5, MEMBERS, 4)
    assert not store.failed


def test_sync_failure_is_sticky(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    store = harness.store
    if isinstance(store, MemoryStorage):
        store.inject_sync_failure()
    else:
        assert isinstance(store, Storage)

        def boom() -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(store, "_sync_env", boom)
    with pytest.raises(StorageError):
        store.write(Persist(entries=[entry(1)], must_sync=True))
    assert store.failed
    with pytest.raises(StorageError, match="failed earlier"):
        store.load()


def test_the_membership_history_is_kept_and_replaced_whole(harness: Harness) -> None:
    store = harness.store
    assert store.load()[0].membership is None  # never written: the founding one
    store.write(Persist(entries=[entry(1)], membership=b"history one", must_sync=True))
    state, _ = harness.restart().load()
    assert (state.membership, [e.slot for e in state.entries]) == (b"history one", [1])
    harness.store.write(Persist(promised=Ballot(3, 1), must_sync=True))  # None: kept
    assert harness.restart().load()[0].membership == b"history one"
    harness.store.write(Persist(membership=b"two", must_sync=True))  # shorter: no leftovers
    assert harness.restart().load()[0].membership == b"two"
    harness.store.write(Persist(membership=b"", must_sync=True))  # empty is a value, not None
    assert harness.restart().load()[0].membership == b""


def test_a_membership_alone_is_a_write_of_its_own(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(membership=b"m"))  # no sync asked: committed, synced at close
    assert store.load()[0].membership == b"m"
    assert harness.restart().load()[0].membership == b"m"


def test_a_registration_overwrites_and_zero_forgets(harness: Harness) -> None:
    store = harness.store
    store.write(Persist(registry={2: 22, 3: 33, 4: 44}, must_sync=True))
    store.write(Persist(registry={2: 99, 3: 0, 5: 0}, must_sync=True))  # 5: nothing to forget
    assert store.load()[0].registry == {2: 99, 4: 44}
    state, _ = harness.restart().load()
    assert state.registry == {2: 99, 4: 44}
    harness.store.write(Persist(registry={3: 77, 2: 0, 4: 0}, must_sync=True))
    assert harness.restart().load()[0].registry == {3: 77}
    harness.store.write(Persist(registry={3: 0}, must_sync=True))
    assert harness.restart().load()[0].registry == {}


def test_a_snapshot_carries_the_membership_and_the_newer_one_wins(harness: Harness) -> None:
    from pyxos.core.config import Config
    from pyxos.core.membership import Change, History

    old = History.founding(Config.of(MEMBERS), 4)
    new, error = old.apply(7, Change("add", 4, "h:1"))
    assert error is None and new.version == 7
    store = harness.store
    store.write(
        Persist(
            entries=[entry(s, True) for s in range(1, 9)],
            commit_index=8,
            membership=old.encode(),
            must_sync=True,
        )
    )
    # The snapshot through slot 8 (it compacted the change of slot 7) is durable before
    # the log write that would have carried the newer history: a crash in between.
    store.save_snapshot(8, MEMBERS, b"state", Ballot(2, 1), new.encode())
    state, info = harness.restart().load()
    assert info is not None and info.membership == new.encode()
    assert state.membership == new.encode()
    harness.store.write(Persist(membership=old.encode(), must_sync=True))  # older: loses
    assert harness.restart().load()[0].membership == new.encode()


def test_an_incoming_snapshot_carries_the_membership(harness: Harness) -> None:
    from pyxos.core.config import Config
    from pyxos.core.membership import Change, History

    new, _ = History.founding(Config.of(MEMBERS), 4).apply(3, Change("remove", 3))
    writer = harness.store.begin_incoming(
        9, MEMBERS, 5, zlib.crc32(b"state"), Ballot(1, 1), new.encode()
    )
    writer.write_chunk(0, b"state")
    writer.finish()
    assert harness.restart().load()[0].membership == new.encode()
