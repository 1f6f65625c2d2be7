"""The blocking pops in the state machine: BLPOP, BRPOP, BLMOVE, BZPOPMIN, BZPOPMAX.

A replicated state machine cannot wait: an entry is applied at once, identically on every
replica. So here a blocking pop is the non-blocking pop it turns into when data is there
(the first non-empty key, in argument order, as Redis serves it), and otherwise changes
nothing and answers null, which is what Redis answers inside MULTI or a script. The waiting
is done by the server that holds the client's connection (:mod:`pyxos.server.blocking`):
it retries the pop through the log when a push to one of the keys is applied, and answers
the timeout itself, so a pop that times out never changed the state.

The timeout is still checked here, with Redis's errors, so that a bad one is refused the
same way on every path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

from pyxos.kv.longdouble import parse_ld
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import NULL_ARRAY, Container, ListValue, ZSet
from pyxos.resp.integers import LLONG_MAX
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["BlockingPops", "parse_timeout"]

ERR_TIMEOUT_FLOAT = ErrorReply("ERR timeout is not a float or out of range")
ERR_TIMEOUT_NEGATIVE = ErrorReply("ERR timeout is negative")


def parse_timeout(arg: bytes) -> int | ErrorReply:
    """A blocking timeout in seconds (a long double) as whole milliseconds, rounded up,
    0 for forever (Redis's getTimeoutFromObjectOrReply)."""
    value = parse_ld(arg)
    if value is None:
        return ERR_TIMEOUT_FLOAT
    if isinstance(value, tuple):
        return ERR_TIMEOUT_NEGATIVE  # C's cast of an infinity is LLONG_MIN
    ms = math.ceil(value * Fraction(1000))
    if ms < 0 or ms > LLONG_MAX:
        return ERR_TIMEOUT_NEGATIVE
    return ms


class BlockingPops(TypedKeyspace):
    """The state machine's side of the blocking pops (a mixin)."""

    def pop_extreme(self, key: bytes, count: int, highest: bool) -> list[Reply]:
        raise NotImplementedError  # ZSetCommands'

    def list_pop(self, key: bytes, left: bool) -> bytes:
        raise NotImplementedError  # ListCommands'

    def list_move(self, src: bytes, dst: bytes, left_from: bool, left_to: bool) -> Reply:
        raise NotImplementedError  # ListCommands'

    def _pop_first(
        self, argv: Sequence[bytes], kind: type[Container], pop: Callable[[bytes], list[Reply]]
    ) -> Reply:
        """BLPOP, BRPOP, BZPOPMIN, BZPOPMAX: check the timeout, then ``[key, *pop(key)]``
        for the first key holding a ``kind`` (WRONGTYPE for a key holding another kind
        before it), null when none does."""
        timeout = parse_timeout(argv[-1])
        if isinstance(timeout, ErrorReply):
            return timeout
        key: bytes
        for key in argv[1:-1]:
            if self.value_of(key, kind) is not None:
                return [key, *pop(key)]
        return NULL_ARRAY

    def _bzpop(self, argv: Sequence[bytes], highest: bool) -> Reply:
        def pop(key: bytes) -> list[Reply]:
            return self.pop_extreme(key, 1, highest)

        return self._pop_first(argv, ZSet, pop)

    def c_bzpopmin(self, argv: Sequence[bytes]) -> Reply:
        return self._bzpop(argv, highest=False)

    def c_bzpopmax(self, argv: Sequence[bytes]) -> Reply:
        return self._bzpop(argv, highest=True)

    def _blpop(self, argv: Sequence[bytes], left: bool) -> Reply:
        def pop(key: bytes) -> list[Reply]:
            return [self.list_pop(key, left)]

        return self._pop_first(argv, ListValue, pop)

    def c_blpop(self, argv: Sequence[bytes]) -> Reply:
        return self._blpop(argv, left=True)

    def c_brpop(self, argv: Sequence[bytes]) -> Reply:
        return self._blpop(argv, left=False)
