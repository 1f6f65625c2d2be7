"""The typed access every container command goes through, on top of the keyspace.

A container is changed in place, so a command does not store it again: it tells
:meth:`TypedKeyspace.changed`, which deletes the key once the container is empty (Redis never
keeps an empty one) and tells WATCHers. Kept apart from :mod:`pyxos.kv.values` so that the
value model sits below the keyspace that holds it.

Randomness (SPOP, SRANDMEMBER, HRANDFIELD, ZRANDMEMBER) comes from a generator seeded by
the log position and the draws made since the current EXEC or script began, as RANDOMKEY's
does: every replica draws the same numbers for the same entry.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from pyxos.kv.keyspace import Keyspace
from pyxos.kv.values import Container, Value, WrongTypeError, ZSet

__all__ = ["TypedKeyspace", "with_flag"]

T = TypeVar("T")


def with_flag(argv: Sequence[bytes], flag: bytes) -> bool | None:
    """HRANDFIELD's WITHVALUES, ZRANDMEMBER's WITHSCORES: whether ``flag`` (any case) is
    the fourth argument; None (a syntax error) for anything else there or after it."""
    if len(argv) < 4:
        return False
    if len(argv) > 4 or argv[3].lower() != flag:
        return None
    return True


class TypedKeyspace(Keyspace):
    """The accessors and change notifications the container commands share."""

    _applied: int

    def value_of(self, key: bytes, kind: type[Container]) -> Container | None:
        """The key's container of ``kind``, None if the key is absent; WRONGTYPE otherwise."""
        value = self.db.data.get(key)
        if value is None or type(value) is kind:
            return value
        raise WrongTypeError

    def string_of(self, key: bytes) -> bytes | None:
        """The key's string, None if absent; WRONGTYPE if it holds a container."""
        value = self.db.data.get(key)
        if value is None or type(value) is bytes:
            return value
        raise WrongTypeError

    def create(self, key: bytes, value: Container) -> Container:
        """Store a new container at a key that does not exist."""
        self.put(key, value)
        return value

    def changed(self, key: bytes, value: Value) -> None:
        """A container was changed in place: delete it if now empty, tell WATCHers."""
        db = self.db
        if not value:
            self.delete(key)
        elif db.watched:
            self.touch(db, key)

    def ready(self, key: bytes) -> None:
        """A list or sorted set got elements (for blocked pops on this node)."""
        if self.on_ready is not None:
            self.on_ready(self.db_index, key)

    def rng(self) -> random.Random:
        """A generator seeded by the log position and the draws made in this entry."""
        rng = random.Random(self._applied * 1_000_003 + self.random_draws)
        self.random_draws += 1
        return rng

    def random_element(self, key: bytes, kind: type[Container]) -> bytes | None:
        """The form without a count of HRANDFIELD, SRANDMEMBER, SPOP and ZRANDMEMBER: a
        field or member of the key's container drawn at random; None if the key is absent."""
        value = self.value_of(key, kind)
        if value is None:
            return None
        if isinstance(value, ZSet):
            member: bytes = self.random_one(value.index)[1]  # by rank: O(log n), no copy
            return member
        return self.random_one(list(value))

    def random_one(self, items: Sequence[T]) -> T:
        """One of ``items`` (not empty), drawn as HRANDFIELD, SRANDMEMBER, SPOP and
        ZRANDMEMBER draw it without a count."""
        return items[self.rng().randrange(len(items))]

    def random_picks(self, items: Sequence[T], count: int) -> list[T]:
        """What the count of HRANDFIELD, SRANDMEMBER and ZRANDMEMBER picks from ``items``
        (not empty; ``count`` not 0): a negative count, that many draws with repeats; a
        positive one, that many distinct items in their order (all when there are fewer)."""
        rng = self.rng()
        if count < 0:
            return [items[rng.randrange(len(items))] for _ in range(-count)]
        if count >= len(items):
            return list(items)
        return [items[i] for i in sorted(rng.sample(range(len(items)), count))]
