"""Random sequences of writes, snapshots and restarts: LMDB storage equals a tiny model.

The model is written from the documented rules of ``Storage.write`` and nothing else, so
it checks the LMDB code and ``MemoryStorage`` (run in lockstep) against the contract
rather than against each other.
"""

from __future__ import annotations

import dataclasses
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import InstallSnapshot, SlotValue
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.storage import LmdbStorage, MemoryStorage, Storage
from pyxos.storage.records import key_slot

MEMBERS = (1, 2, 3)


@dataclass
class Model:
    promised: Ballot = ZERO
    log: dict[int, SlotValue] = field(default_factory=dict)
    commit_index: int = 0
    snapshot: tuple[int, tuple[int, ...], bytes] | None = None
    registry: dict[int, int] = field(default_factory=dict)
    membership: bytes | None = None

    @property
    def floor(self) -> int:
        return self.snapshot[0] if self.snapshot else 0

    def install(self, last_slot: int, members: tuple[int, ...], data: bytes) -> None:
        if last_slot > self.floor:
            self.snapshot = (last_slot, tuple(sorted(members)), data)
        self.compact(self.floor)

    def compact(self, through: int) -> None:
        self.log = {s: e for s, e in self.log.items() if s > through}

    def write(self, p: Persist) -> None:
        if p.promised is not None:
            self.promised = p.promised
        floor = max(self.floor, p.snapshot.last_slot if p.snapshot else 0)
        self.log.update({e.slot: e for e in p.entries if e.slot > floor})
        if p.commit_index is not None:
            self.commit_index = p.commit_index
        if p.snapshot is not None:
            self.install(p.snapshot.last_slot, p.snapshot.members, p.snapshot.data)
        if p.compact_through is not None:
            self.compact(p.compact_through)
        for node, incarnation in p.registry.items():
            if incarnation:
                self.registry[node] = incarnation
            else:
                self.registry.pop(node, None)
        if p.membership is not None:
            self.membership = p.membership

    def contiguous(self) -> int:
        """The highest commit index a correct core could write now."""
        c = self.floor
        while c + 1 in self.log:
            c += 1
        return c

    def hard_state(self) -> HardState:
        floor = self.floor
        return HardState(
            self.promised,
            [self.log[s] for s in sorted(self.log)],
            self.commit_index,
            floor,
            self.snapshot[1] if self.snapshot else None,
            registry=dict(self.registry),
            membership=self.membership,
        )


ballots = st.builds(Ballot, st.integers(0, 5), st.integers(1, 3))


@st.composite
def persist_for(draw: st.DrawFn, model: Model) -> Persist:
    floor = model.floor
    snapshot = None
    if draw(st.integers(0, 9)) == 0:
        last = draw(st.integers(max(1, floor - 2), floor + 15))
        data = draw(st.binary(max_size=64))
        snapshot = InstallSnapshot(2, last, MEMBERS, data)
    entries = [
        SlotValue(
            slot,
            draw(ballots),
            tuple(draw(st.lists(st.binary(max_size=8), max_size=3))),
            draw(st.booleans()),
        )
        for slot in draw(st.lists(st.integers(1, floor + 25), max_size=8, unique=True))
    ]
    p = Persist(
        promised=draw(st.none() | ballots),
        entries=entries,
        snapshot=snapshot,
        registry=draw(st.dictionaries(st.integers(2, 4), st.integers(0, 3), max_size=2)),
        membership=draw(st.none() | st.binary(max_size=16)),
        must_sync=draw(st.booleans()),
    )
    # What the model would hold after this batch, to pick a commit index that is valid.
    after = Model(model.promised, dict(model.log), model.commit_index, model.snapshot)
    after.write(p)
    if draw(st.booleans()):
        p.commit_index = draw(st.integers(0, after.contiguous()))
    limit = after.floor
    if limit and draw(st.booleans()):
        p.compact_through = draw(st.integers(0, limit))
    return p


def raw_log_slots(store: Storage) -> list[int]:
    """Slots with a record in LMDB: compaction must really delete, not just hide."""
    assert store._env is not None
    with store._env.begin() as txn:
        return [key_slot(k) for k, _ in txn.cursor(db=store._log)]


def check(model: Model, store: Storage, memory: MemoryStorage) -> None:
    expected = model.hard_state()
    assert raw_log_slots(store) == sorted(model.log)
    for backend in (store, memory):
        state, info = backend.load()
        assert state.standing is Standing.JOINING and state.incarnation > 0
        assert dataclasses.replace(state, standing=expected.standing, incarnation=0) == expected
        if model.snapshot is None:
            assert info is None
        else:
            last, members, data = model.snapshot
            assert info is not None
            assert (info.last_slot, info.members, info.size) == (last, members, len(data))
            assert info.checksum == zlib.crc32(data)
            assert backend.read_snapshot() == data


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_writes_then_reopen_match_the_model(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "node"

        def open_store() -> Storage:
            return LmdbStorage(path, node_id=1, cluster_id="model", members=MEMBERS)

        model = Model()
        memory = MemoryStorage(members=MEMBERS)
        store = open_store()
        try:
            for _ in range(data.draw(st.integers(1, 15), label="steps")):
                action = data.draw(st.sampled_from(["write", "write", "write", "save", "reopen"]))
                if action == "write":
                    p = data.draw(persist_for(model), label="persist")
                    store.write(p)
                    memory.write(p)
                    model.write(p)
                elif action == "save":
                    last = model.floor + data.draw(st.integers(1, 10), label="ahead")
                    blob = data.draw(st.binary(max_size=200), label="snapshot")
                    store.save_snapshot(last, MEMBERS, blob)
                    memory.save_snapshot(last, MEMBERS, blob)
                    model.install(last, MEMBERS, blob)
                else:
                    store.close()
                    store = open_store()
                    memory.close()
                    memory.reopen()
                    check(model, store, memory)
            store.close()
            store = open_store()
            check(model, store, memory)
        finally:
            store.close()
