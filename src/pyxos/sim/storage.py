"""Simulated stable storage with the recovery contract of the real stores.

One write is in flight at a time (the shared driver's group commit); it is a transaction,
durable once ``sync`` returns, applied by the same rules as every store
(:mod:`pyxos.storage.batch`). Power loss keeps the write in flight or drops it, as
SQLite's WAL and LMDB's meta pages do, or (a fault of its own) tears it: part of it
lands, with a record that fails its checksum. Records at rest can rot (a flipped bit).
Recovery then does what the real stores do: it finds the bad record and raises
``CorruptStorageError``, and the node's driver moves the data dir aside and starts a fresh
one under a new incarnation, which is the disk-loss path of the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO
from pyxos.core.messages import InstallSnapshot
from pyxos.core.ready import HardState, Persist, Standing
from pyxos.core.replica import Rng
from pyxos.storage.batch import DurableImage
from pyxos.storage.errors import CorruptStorageError


@dataclass(slots=True)
class SimStorage:
    """One node's data dir. ``forget_promises`` is a deliberate bug for checker tests."""

    incarnation: int
    forget_promises: bool = False
    skip_fsync: bool = False
    """A deliberate bug: writes are committed but never synced, so they sit in the page
    cache, which a power loss empties."""
    durable: DurableImage = field(init=False)
    cached: list[Persist] = field(default_factory=list)
    """Committed, never synced (``skip_fsync`` only)."""
    in_flight: Persist | None = None
    damaged: str | None = None
    """Which record fails its checksum, if one does."""
    syncs: int = 0

    def __post_init__(self) -> None:
        self.durable = DurableImage(self.incarnation)

    def vote_at_once(self) -> None:
        """The planted bug of the disk-loss hole: this new data dir votes at once."""
        self.durable.standing = (Standing.VOTER, None)

    def write(self, persist: Persist) -> None:
        """Start a write (the driver has at most one in flight)."""
        assert self.in_flight is None, "one write at a time"
        self.in_flight = persist

    def sync(self) -> None:
        """The write in flight is durable."""
        if self.in_flight is not None:
            if self.skip_fsync:
                self.cached.append(self.in_flight)
            else:
                self.durable.write(self.in_flight)
            self.in_flight = None
        self.syncs += 1

    def fail_write(self) -> None:
        """The write in flight failed: none of it is on disk."""
        self.in_flight = None

    def save_app_snapshot(self, snapshot: InstallSnapshot) -> None:
        """The driver's own snapshot of its state machine, written durably at once."""
        self.durable.install(snapshot)

    def crash(self, rng: Rng, *, tear: bool = False) -> None:
        """Power loss: the write in flight lands whole or not at all; or it is torn."""
        cached, self.cached = self.cached, []
        for p in cached[: rng.randrange(0, len(cached) + 1)]:
            self.durable.write(p)  # what the kernel happened to write back
        flight, self.in_flight = self.in_flight, None
        if flight is not None:
            if tear and flight.entries:
                # Part of the transaction reached the disk, its last record half written.
                keep = rng.randrange(0, len(flight.entries))
                for e in flight.entries[:keep]:
                    self.durable.entries[e.slot] = e
                self.damaged = f"log record of slot {flight.entries[keep].slot} (torn)"
            elif rng.randrange(0, 2):
                self.durable.write(flight)
        if self.forget_promises:
            self.durable.promised = ZERO

    def rot(self, rng: Rng) -> str:
        """Flip a bit in one record at rest; returns which."""
        names = ["identity", "promised", "commit index"]
        names += [f"log record of slot {s}" for s in sorted(self.durable.entries)]
        what = names[rng.randrange(0, len(names))]
        self.damaged = what
        return what

    def recover(self) -> tuple[HardState, InstallSnapshot | None]:
        """What a restarted node reads back, checked as the real stores check it."""
        if self.damaged is not None:
            raise CorruptStorageError(f"{self.damaged} fails its checksum")
        return self.durable.recover(), self.durable.snapshot
