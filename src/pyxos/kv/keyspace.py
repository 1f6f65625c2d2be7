"""The replicated data: 16 numbered databases of string keys, their expiry times, the clock.

Time. A state machine may not read a clock (every replica must compute the same thing), so
time enters through the log: a request carries the wall clock of the node that took it from
its client (:mod:`pyxos.kv.request`), and the state machine's clock, :attr:`Keyspace.now`,
is the largest stamp applied so far. It therefore never goes backwards, whichever node
stamped or leads, and it is identical on every replica at the same applied index. Relative
TTLs (``EX``, ``EXPIRE``) become absolute against it when they are applied.

Expiry. Whenever the clock advances, every key whose expiry time it reached is deleted
before the command runs, so the replicated state never holds a key that is past its time;
expired keys are removed by the log, never by a replica on its own. Keys with a TTL are
kept in a heap by expiry time (``heapq``; entries for keys whose TTL changed since are
skipped when they come up), so advancing costs O(log n) per expired key and nothing while
nothing is due. An idle cluster still expires keys: the server proposes clock ticks
(requests with a stamp and no command) while something is due.

Bookkeeping stays off the hot path: a plain ``SET`` of a key in a database without TTLs,
WATCHes or a SCAN index is one dict store (:meth:`Keyspace.plain`); everything else goes
through :meth:`Keyspace.put`, :meth:`Keyspace.update` and :meth:`Keyspace.delete`, which
also tell WATCHers (:meth:`Keyspace.touch`) and the SCAN index about the change.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable

from pyxos.kv.scan import ScanIndex
from pyxos.kv.values import Value

__all__ = ["NUM_DBS", "Db", "Keyspace", "Watch"]

NUM_DBS = 16
"""Databases, numbered 0 to 15, as in Redis's default configuration."""


class Db:
    """One numbered database.

    ``data`` maps keys to values (:mod:`pyxos.kv.values`); ``containers`` is set once a
    value other than a string was stored (a snapshot must then copy values, which are
    changed in place; a store of strings only is copied with one dict copy); ``expires``
    maps keys that have a TTL to their expiry time (ms since the epoch); ``watched`` maps
    keys to the WATCH registrations that want to hear of a change; ``scan`` is the
    node-local SCAN index, or None.
    """

    __slots__ = ("containers", "data", "expires", "scan", "watched")

    def __init__(self) -> None:
        self.data: dict[bytes, Value] = {}
        self.containers = False
        self.expires: dict[bytes, int] = {}
        self.watched: dict[bytes, list[int]] = {}
        self.scan: ScanIndex | None = None

    def plain(self) -> bool:
        """True when a write needs no bookkeeping beyond the dict store."""
        return not (self.expires or self.watched or self.scan is not None)


class Watch:
    """One connection's WATCH registration: its keys, and whether any changed since."""

    __slots__ = ("dirty", "keys", "since")

    def __init__(self, since: int) -> None:
        self.keys: list[tuple[int, bytes]] = []
        self.dirty = False
        self.since = since


class Keyspace:
    """The data and its primitives; the command mixins build on these."""

    def __init__(self) -> None:
        self.dbs = [Db() for _ in range(NUM_DBS)]
        self.db = self.dbs[0]
        """The database the current command runs in."""
        self.db_index = 0
        self.now = 0
        """The replicated clock: the largest time stamp applied, in ms since the epoch."""
        self.clock = 0
        """The time the current command sees: :attr:`now` while applying; for a local read,
        the later of :attr:`now` and the reading node's clock (TTL replies)."""
        self.watchers: OrderedDict[int, Watch] = OrderedDict()
        self.expired_keys = 0
        """Keys deleted because their time came (for INFO; not replicated state)."""
        self.random_draws = 0
        """RANDOMKEY draws since the current EXEC or script began (part of its seed)."""
        self._heap: list[tuple[int, int, bytes]] = []
        self._pushes = 0
        self.on_ready: Callable[[int, bytes], None] | None = None
        """Told ``(db, key)`` when a key may have got elements to pop (``-1`` for any key):
        blocked clients on this node retry (:mod:`pyxos.server.blocking`). Node-local, not
        replicated state."""

    # --- databases and the clock -----------------------------------------------------------

    def select(self, index: int) -> None:
        self.db_index = index
        self.db = self.dbs[index]

    def advance(self, stamp: int) -> None:
        """Move the clock to ``stamp`` if that is later, deleting every key now due."""
        if stamp > self.now:
            self.now = self.clock = stamp
            heap = self._heap
            if heap and heap[0][0] <= stamp:
                self._expire_due(stamp)

    def _expire_due(self, now: int) -> None:
        heap, dbs = self._heap, self.dbs
        while heap and heap[0][0] <= now:
            at, index, key = heapq.heappop(heap)
            db = dbs[index]
            if db.expires.get(key) == at:
                del db.expires[key]
                del db.data[key]
                self.expired_keys += 1
                if db.watched:
                    self.touch(db, key)

    def next_expiry(self) -> int | None:
        """The earliest expiry time in the heap (perhaps of a key changed since), or None."""
        heap = self._heap
        return heap[0][0] if heap else None

    def _rebuild_heap(self) -> None:
        self._heap = [
            (at, index, key) for index, db in enumerate(self.dbs) for key, at in db.expires.items()
        ]
        heapq.heapify(self._heap)

    # --- key primitives (current database) -------------------------------------------------

    def put(self, key: bytes, value: Value, keep_ttl: bool = False) -> None:
        """SET semantics: store ``value``; the key loses its TTL unless ``keep_ttl``."""
        db = self.db
        data = db.data
        if type(value) is not bytes:
            db.containers = True
            if self.on_ready is not None:
                self.on_ready(self.db_index, key)
        if key not in data and db.scan is not None and not db.scan.added(key):
            db.scan = None
        data[key] = value
        if not keep_ttl and db.expires:
            db.expires.pop(key, None)
        if db.watched:
            self.touch(db, key)

    def update(self, key: bytes, value: bytes) -> None:
        """A new value for the key, keeping its TTL (INCR, APPEND, SETRANGE...)."""
        self.put(key, value, keep_ttl=True)

    def delete(self, key: bytes) -> bool:
        """Remove the key; whether it existed."""
        db = self.db
        if db.data.pop(key, None) is None:
            return False
        if db.expires:
            db.expires.pop(key, None)
        if db.watched:
            self.touch(db, key)
        return True

    def expire_at(self, key: bytes, at: int) -> None:
        """Give an existing key an expiry time; at or before :attr:`now` deletes it now."""
        if at <= self.now:
            self.delete(key)
            return
        db = self.db
        db.expires[key] = at
        heapq.heappush(self._heap, (at, self.db_index, key))
        if db.watched:
            self.touch(db, key)
        self._pushes += 1
        if self._pushes >= 4096:
            self._pushes = 0
            if len(self._heap) > 2 * sum(len(d.expires) for d in self.dbs) + 1024:
                self._rebuild_heap()

    def persist(self, key: bytes) -> bool:
        """Drop the key's TTL; whether it had one."""
        db = self.db
        if db.expires.pop(key, None) is None:
            return False
        if db.watched:
            self.touch(db, key)
        return True

    def ttl_of(self, key: bytes) -> int | None:
        """The key's expiry time, or None."""
        return self.db.expires.get(key)

    # --- whole databases ------------------------------------------------------------------

    def clear(self, db: Db) -> int:
        """Empty one database; returns how many keys it held. WATCHers of keys that existed
        are told (Redis's FLUSHDB touches only keys that were there)."""
        count = len(db.data)
        if db.watched:
            for key in [k for k in db.watched if k in db.data]:
                self.touch(db, key)
        db.data = {}
        db.expires = {}
        db.scan = None
        db.containers = False
        return count

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: the contents change places; WATCHes stay with the database numbers."""
        da, db_ = self.dbs[a], self.dbs[b]
        for d, other in ((da, db_), (db_, da)):
            for key in [k for k in d.watched if k in d.data or k in other.data]:
                self.touch(d, key)
        da.data, db_.data = db_.data, da.data
        da.expires, db_.expires = db_.expires, da.expires
        da.scan, db_.scan = db_.scan, da.scan
        da.containers, db_.containers = db_.containers, da.containers
        self._rebuild_heap()
        if self.on_ready is not None:
            self.on_ready(-1, b"")

    # --- WATCH ---------------------------------------------------------------------------

    def touch(self, db: Db, key: bytes) -> None:
        """A key changed: mark every WATCH registration on it dirty."""
        ids = db.watched.get(key)
        if ids:
            watchers = self.watchers
            for wid in ids:
                watch = watchers.get(wid)
                if watch is not None:
                    watch.dirty = True
