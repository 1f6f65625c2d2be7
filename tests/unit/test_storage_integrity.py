"""Integrity of a data dir on both engines: flipped bytes, identities, standing, floors.

Bytes are flipped in the real files a store wrote, after a clean close, where a record's
bytes sit on disk: the store must find the damage at load, name the file, and raise
``CorruptStorageError`` (the node then does not vote with that state).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import InstallSnapshot, SlotValue
from pyxos.core.ready import Persist, Standing
from pyxos.storage import (
    ENGINES,
    CorruptStorageError,
    IdentityMismatchError,
    Storage,
    open_storage,
)
from pyxos.storage.datadir import K_MEMBERSHIP, K_REGISTRY, Transaction

MEMBERS = (1, 2, 3)
MARKER = b"integrity-marker-0123456789"


def open_(engine: str, path: Path, **kw: object) -> Storage:
    options: dict[str, object] = {"node_id": 1, "cluster_id": "c1", "members": MEMBERS}
    options.update(kw)
    return open_storage(engine, path, **options)  # type: ignore[arg-type]


def _write_some(store: Storage) -> None:
    entries = [SlotValue(s, Ballot(2, 1), (b"cmd%d" % s,), s <= 2) for s in range(1, 6)]
    entries[2] = SlotValue(3, Ballot(2, 1), (MARKER,))
    store.write(Persist(promised=Ballot(2, 1), entries=entries, commit_index=2, must_sync=True))


def _flip(path: Path, needle: bytes, offset: int = 5) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0, f"{needle!r} not found in {path}"
    data[at + offset] ^= 0x20
    path.write_bytes(bytes(data))


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_flipped_byte_in_a_log_record_is_found_at_load_and_names_the_file(
    engine: str, tmp_path: Path
) -> None:
    with open_(engine, tmp_path / "d") as store:
        _write_some(store)
        data_file = store.data_file
    _flip(data_file, MARKER)
    with pytest.raises(CorruptStorageError) as caught, open_(engine, tmp_path / "d") as store:
        store.load()
    message = str(caught.value)
    assert str(data_file) in message
    assert "checksum" in message or "malformed" in message


def test_a_flipped_byte_in_the_promise_is_found(engine: str, tmp_path: Path) -> None:
    promise = Ballot(0x5A5A5A, 1)
    with open_(engine, tmp_path / "d") as store:
        store.write(Persist(promised=promise, must_sync=True))
        data_file = store.data_file
    _flip(data_file, b"\xce\x00\x5a\x5a\x5a", offset=3)  # msgpack uint32 0x5a5a5a
    with (
        pytest.raises(CorruptStorageError, match="checksum"),
        open_(engine, tmp_path / "d") as store,
    ):
        store.load()


def test_unflipped_files_load_as_written(engine: str, tmp_path: Path) -> None:
    with open_(engine, tmp_path / "d") as store:
        _write_some(store)
    with open_(engine, tmp_path / "d") as store:
        state, _ = store.load()
    assert state.promised == Ballot(2, 1)
    assert [e.slot for e in state.entries] == [1, 2, 3, 4, 5]
    assert state.entries[2].value == (MARKER,)


def test_a_new_data_dir_has_a_fresh_incarnation_and_keeps_it(engine: str, tmp_path: Path) -> None:
    with open_(engine, tmp_path / "a") as a, open_(engine, tmp_path / "b") as b:
        first, other = a.incarnation, b.incarnation
        assert a.load()[0].standing is Standing.JOINING
    assert first != other and first > 0
    with open_(engine, tmp_path / "a") as a:
        assert a.incarnation == first


def test_standing_and_registry_survive_a_restart(engine: str, tmp_path: Path) -> None:
    with open_(engine, tmp_path / "d") as store:
        store.write(Persist(registry={2: 22, 3: 33}, must_sync=True))
        store.write(Persist(registry={2: 99, 4: 44}, standing=Standing.VOTER, must_sync=True))
    with open_(engine, tmp_path / "d") as store:
        state, _ = store.load()
    assert state.standing is Standing.VOTER
    assert state.registry == {2: 99, 3: 33, 4: 44}  # a later registration overwrites
    with open_(engine, tmp_path / "d") as store:
        store.write(Persist(registry={3: 0}, must_sync=True))  # forgotten
    with open_(engine, tmp_path / "d") as store:
        assert store.load()[0].registry == {2: 99, 4: 44}
    with open_(engine, tmp_path / "d") as store:
        store.write(Persist(standing=Standing.LEARNER, superseded=0xABC, must_sync=True))
    with open_(engine, tmp_path / "d") as store:
        state, _ = store.load()
    assert (state.standing, state.superseded) == (Standing.LEARNER, 0xABC)


def test_a_flipped_byte_in_the_membership_history_is_found(engine: str, tmp_path: Path) -> None:
    history = b"membership-history-" + MARKER
    with open_(engine, tmp_path / "d") as store:
        _write_some(store)
        store.write(Persist(membership=history, must_sync=True))
        data_file = store.data_file
    with open_(engine, tmp_path / "d") as store:
        assert store.load()[0].membership == history  # as written, before the flip
    _flip(data_file, b"membership-history-")
    with open_(engine, tmp_path / "d") as store:
        with pytest.raises(CorruptStorageError) as caught:
            store.load()
        assert store.failed  # sticky: the node must not go on with this state
    message = str(caught.value)
    assert str(data_file) in message and "membership" in message and "checksum" in message


def test_the_membership_history_is_in_the_batchs_transaction(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_(engine, tmp_path / "d") as store:
        committed: list[Transaction] = []
        commit = store._engine_commit

        def recording(txn: Transaction) -> None:
            committed.append(txn)
            commit(txn)

        monkeypatch.setattr(store, "_engine_commit", recording)
        entries = [SlotValue(1, Ballot(2, 1), (b"a",))]
        store.write(Persist(entries=entries, registry={2: 5}, membership=b"m", must_sync=True))
        (txn,) = committed
        assert [slot for slot, _ in txn.rows] == [1]
        assert {K_MEMBERSHIP, K_REGISTRY} <= {key for key, _ in txn.meta}
        store.write(Persist(promised=Ballot(3, 1), must_sync=True))
        assert K_MEMBERSHIP not in {key for key, _ in committed[-1].meta}  # None: untouched


def test_a_snapshot_raises_the_recovered_promise_to_its_floor(engine: str, tmp_path: Path) -> None:
    with open_(engine, tmp_path / "d") as store:
        store.write(Persist(promised=Ballot(1, 1), must_sync=True))
        store.save_snapshot(7, MEMBERS, b"state", Ballot(5, 3))
    with open_(engine, tmp_path / "d") as store:
        state, snapshot = store.load()
    assert snapshot is not None and snapshot.ballot == Ballot(5, 3)
    assert state.promised == Ballot(5, 3)


def test_an_installed_snapshot_keeps_the_senders_floor(engine: str, tmp_path: Path) -> None:
    with open_(engine, tmp_path / "d") as store:
        snap = InstallSnapshot(2, 9, MEMBERS, b"remote state", Ballot(4, 2))
        store.write(Persist(snapshot=snap, compact_through=9, must_sync=True))
    with open_(engine, tmp_path / "d") as store:
        state, snapshot = store.load()
    assert snapshot is not None and snapshot.last_slot == 9
    assert state.promised == Ballot(4, 2)


def test_a_data_dir_of_another_cluster_is_refused(engine: str, tmp_path: Path) -> None:
    open_(engine, tmp_path / "d").close()
    with pytest.raises(IdentityMismatchError, match="cluster 'c1'"):
        open_(engine, tmp_path / "d", cluster_id="other")
