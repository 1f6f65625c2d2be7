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
from collections.abc import Callable, Sequence
from typing import TypeVar

from pyxos.kv.errors import ERR_NOT_INTEGER, ERR_OUT_OF_RANGE, ERR_RAND_RANGE, ERR_SYNTAX
from pyxos.kv.keyspace import Keyspace
from pyxos.kv.values import Container, Value, WrongTypeError, ZSet
from pyxos.resp.integers import LLONG_MAX, string2ll
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["TypedKeyspace", "random_args"]

T = TypeVar("T")


def random_args(argv: Sequence[bytes], flag: bytes | None) -> tuple[int | None, bool] | ErrorReply:
    """``key [count [flag]]`` of HRANDFIELD (WITHVALUES), ZRANDMEMBER (WITHSCORES) and
    SRANDMEMBER (no flag): the count, None without one, and whether the flag was given.
    Errors in Redis's order: anything else after the count, then a count that is not an
    integer, or is LLONG_MIN (as many draws as its negation cannot be counted)."""
    if len(argv) > (3 if flag is None else 4) or (len(argv) == 4 and argv[3].lower() != flag):
        return ERR_SYNTAX
    if len(argv) == 2:
        return None, False
    count = string2ll(argv[2])
    if count is None:
        return ERR_NOT_INTEGER
    if count < -LLONG_MAX:
        return ERR_RAND_RANGE
    return count, len(argv) == 4


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

    def random_members(
        self,
        argv: Sequence[bytes],
        kind: type[Container],
        flag: bytes | None,
        elements: Callable[[Container], Sequence[T]],
        answer: Callable[[Container, list[T], bool], Reply],
    ) -> Reply:
        """HRANDFIELD, SRANDMEMBER and ZRANDMEMBER: parse ``key [count [flag]]``
        (:func:`random_args`), draw from the container's ``elements`` as the count says,
        and ``answer(container, picked, flag given)``."""
        parsed = random_args(argv, flag)
        if isinstance(parsed, ErrorReply):
            return parsed
        count, flagged = parsed
        if count is None:
            return self.random_element(argv[1], kind)
        if flagged and count < -LLONG_MAX // 2:
            return ERR_OUT_OF_RANGE  # twice as many replies as draws would not fit
        value = self.value_of(argv[1], kind)
        if value is None or count == 0:
            return []
        return answer(value, self.random_picks(elements(value), count), flagged)

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
