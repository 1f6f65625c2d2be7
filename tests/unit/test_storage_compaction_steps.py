"""A snapshot's install is one short transaction; the log it covers is deleted after it,
in steps, so that a batch write never waits for the deletion of a whole large log (at 1M
keys one transaction deleting 121 MB of rows held the storage lock for 0.67 s)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import ENGINES, Storage, open_storage
from pyxos.storage.datadir import Transaction

MEMBERS = (1, 2, 3)


class Crash(BaseException):
    """The process dying part-way through the compaction."""


def entry(slot: int) -> SlotValue:
    return SlotValue(slot, Ballot(2, 1), (b"cmd%d" % slot,), True)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_store(engine: str, path: Path) -> Storage:
    store = open_storage(engine, path, node_id=1, cluster_id="c", members=MEMBERS)
    assert isinstance(store, Storage)
    return store


@pytest.fixture
def store(engine: str, tmp_path: Path) -> Iterator[Storage]:
    s = open_store(engine, tmp_path / "d")
    s.write(Persist(entries=[entry(k) for k in range(1, 201)], must_sync=True))
    s.write(Persist(commit_index=200, must_sync=True))
    yield s
    s.close()


def spy_commits(
    store: Storage, monkeypatch: pytest.MonkeyPatch, crash_at_step: int = 0
) -> list[Transaction]:
    seen: list[Transaction] = []
    original = store._engine_commit

    def commit(txn: Transaction) -> None:
        seen.append(txn)
        steps = sum(t.what == "compacting the log" for t in seen)
        if crash_at_step and steps == crash_at_step:
            raise Crash
        original(txn)

    monkeypatch.setattr(store, "_engine_commit", commit)
    monkeypatch.setattr(type(store), "COMPACT_STEP_SECONDS", 0.0)  # steps shrink to one slot
    return seen


def slots_on_disk(store: Storage) -> list[int]:
    return [slot for slot, _ in store._engine_log(0)]


def test_the_install_deletes_nothing_and_the_log_goes_in_steps(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_commits(store, monkeypatch)
    store.save_snapshot(150, MEMBERS, b"state")
    install = [t for t in seen if t.what == "installing a snapshot"]
    steps = [t.delete_through for t in seen if t.what == "compacting the log"]
    assert len(install) == 1 and install[0].delete_through == 0
    assert len(steps) > 5
    assert steps == sorted(set(steps)) and steps[-1] == 150
    assert slots_on_disk(store) == list(range(151, 201))
    state, info = store.load()
    assert [e.slot for e in state.entries] == list(range(151, 201))
    assert info is not None and info.last_slot == 150


def test_a_crash_part_way_leaves_only_dead_rows_that_the_next_compaction_sweeps(
    engine: str, store: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy_commits(store, monkeypatch, crash_at_step=3)
    with pytest.raises(Crash):
        store.save_snapshot(150, MEMBERS, b"state")
    store.close()
    monkeypatch.undo()
    again = open_store(engine, tmp_path / "d")
    try:
        state, info = again.load()
        assert info is not None and info.last_slot == 150  # the install was durable
        assert [e.slot for e in state.entries] == list(range(151, 201))
        assert min(slots_on_disk(again)) <= 150  # rows the snapshot covers, never read
        again.save_snapshot(180, MEMBERS, b"later")
        assert slots_on_disk(again) == list(range(181, 201))
    finally:
        again.close()


def test_a_store_closed_part_way_stops_compacting_and_keeps_its_snapshot(
    engine: str, store: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot thread may still be compacting when the node closes its storage."""
    seen = spy_commits(store, monkeypatch)
    original = store._engine_commit

    def close_after_two_steps(txn: Transaction) -> None:
        original(txn)
        if sum(t.what == "compacting the log" for t in seen) == 2:
            store.close()

    monkeypatch.setattr(store, "_engine_commit", close_after_two_steps)
    store.save_snapshot(150, MEMBERS, b"state")
    assert sum(t.what == "compacting the log" for t in seen) == 2
    monkeypatch.undo()
    again = open_store(engine, tmp_path / "d")
    try:
        state, info = again.load()
        assert info is not None and info.last_slot == 150
        assert [e.slot for e in state.entries] == list(range(151, 201))
    finally:
        again.close()
