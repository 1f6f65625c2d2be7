"""The SQLite engine: what differs from LMDB (files, errors, engine checks) and a real
ENOSPC. Everything both engines promise is in test_storage_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_storage_failures import assert_sticky, entry, tiny_fs  # noqa: F401 (fixture)

from pyxos.core.ballot import Ballot
from pyxos.core.ready import Persist
from pyxos.storage import (
    CorruptStorageError,
    SqliteStorage,
    Storage,
    StorageError,
    engine_of,
    open_storage,
)
from pyxos.storage.sqlite_store import DB_FILE, SQLITE_DIR

MEMBERS = (1, 2, 3)


def open_sqlite(path: Path) -> SqliteStorage:
    return SqliteStorage(path, node_id=1, cluster_id="c1", members=MEMBERS)


def test_writes_survive_a_reopen_and_the_wal_is_in_use(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "d") as store:
        store.write(Persist(promised=Ballot(3, 2), entries=[entry(1), entry(2)], must_sync=True))
        store.write(Persist(commit_index=2))
        db = tmp_path / "d" / SQLITE_DIR / DB_FILE
        assert db.exists()
        mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    with open_sqlite(tmp_path / "d") as store:
        state, _ = store.load()
        assert state.promised == Ballot(3, 2)
        assert [e.slot for e in state.entries] == [1, 2]
        assert state.commit_index == 2


@pytest.mark.parametrize(("made_by", "opened_with"), [("lmdb", "sqlite"), ("sqlite", "lmdb")])
def test_a_data_dir_is_opened_only_by_the_engine_that_made_it(
    tmp_path: Path, made_by: str, opened_with: str
) -> None:
    open_storage(made_by, tmp_path / "d", node_id=1, cluster_id="c1", members=MEMBERS).close()
    with pytest.raises(StorageError, match=f"holds a {made_by} store"):
        open_storage(opened_with, tmp_path / "d", node_id=1, cluster_id="c1", members=MEMBERS)


def test_no_engine_named_opens_what_the_data_dir_holds(tmp_path: Path) -> None:
    open_storage("lmdb", tmp_path / "old", node_id=1, cluster_id="c1", members=MEMBERS).close()
    assert engine_of(tmp_path / "old") == "lmdb"
    with open_storage(None, tmp_path / "old", node_id=1, cluster_id="c1") as store:
        assert store.ENGINE == "lmdb"
    assert engine_of(tmp_path / "new") is None
    with open_storage(None, tmp_path / "new", node_id=1, cluster_id="c1") as store:
        assert store.ENGINE == "sqlite"
    assert engine_of(tmp_path / "new") == "sqlite"


def test_unknown_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown storage engine 'rocks'"):
        open_storage("rocks", tmp_path / "d", node_id=1, cluster_id="c1")


def test_a_damaged_database_means_rejoin_as_a_learner(tmp_path: Path) -> None:
    with open_sqlite(tmp_path / "d") as store:
        store.write(Persist(entries=[entry(1)], must_sync=True))
    db = tmp_path / "d" / SQLITE_DIR / DB_FILE
    db.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(CorruptStorageError, match="damaged"):
        open_sqlite(tmp_path / "d")


def test_a_failed_commit_is_fatal_and_sticky(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_sqlite(tmp_path / "d")
    store.write(Persist(entries=[entry(1)], must_sync=True))

    class FailingDb:
        """Stands in for the connection: the WAL write fails like a dying disk."""

        def __init__(self, real: sqlite3.Connection) -> None:
            self.real = real
            self.in_transaction = False

        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("REPLACE INTO log"):
                raise sqlite3.OperationalError("disk I/O error")
            return self.real.execute(sql, *args)

        def executemany(self, sql: str, rows: object) -> object:
            raise sqlite3.OperationalError("disk I/O error")

    real = store._db
    assert real is not None
    monkeypatch.setattr(store, "_db", FailingDb(real))
    with pytest.raises(StorageError, match="writing a batch") as info:
        store.write(Persist(entries=[entry(2)], must_sync=True))
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert_sticky(store)  # type: ignore[arg-type]
    monkeypatch.setattr(store, "_db", real)
    store.close()
    with open_sqlite(tmp_path / "d") as again:
        state, _ = again.load()
        assert [e.slot for e in state.entries] == [1]  # the failed batch left no trace


def test_real_enospc_in_sqlite_loses_no_acknowledged_write(tiny_fs: Path) -> None:  # noqa: F811
    acknowledged = 0
    with open_sqlite(tiny_fs / "node1") as store:
        with pytest.raises(StorageError) as info:
            for slot in range(1, 10_000):
                store.write(Persist(entries=[entry(slot, 4096)], must_sync=True))
                acknowledged = slot
        assert isinstance(info.value.__cause__, sqlite3.Error)
        assert acknowledged > 100
        assert_sticky(store)  # type: ignore[arg-type]
    # Restart on the same full disk: everything acknowledged is there.
    with open_sqlite(tiny_fs / "node1") as store:
        state, _ = store.load()
        assert [e.slot for e in state.entries][:acknowledged] == list(range(1, acknowledged + 1))


def test_the_lmdb_store_is_still_the_class_the_runtime_types_against() -> None:
    assert issubclass(SqliteStorage, Storage)
