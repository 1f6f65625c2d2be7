"""Set commands (SADD, SPOP, SINTER, SINTERCARD, SSCAN...), with the checks and replies of
Redis's ``t_set.c``. A set is a :class:`~pyxos.kv.values.SetValue` (a dict of members).

Order. A set Redis keeps as an intset (integers only, at most 512) lists its members in
numeric order, and pyxos does the same; any other set lists them in insertion order (Redis
in its hash table's order, which no client can rely on). SPOP and SRANDMEMBER draw from the
log-seeded generator (:meth:`~pyxos.kv.typed_keyspace.TypedKeyspace.rng`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyxos.kv.errors import ERR_SYNTAX
from pyxos.kv.subscan import ScanView, scan_container
from pyxos.kv.typed_keyspace import TypedKeyspace
from pyxos.kv.values import SetValue, encoding_name, is_intset
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import ErrorReply, Reply

__all__ = ["SetCommands", "ordered_members"]

ERR_POSITIVE = ErrorReply("ERR value is out of range, must be positive")
ERR_NUMKEYS = ErrorReply("ERR numkeys should be greater than 0")
ERR_TOO_MANY_KEYS = ErrorReply("ERR Number of keys can't be greater than number of args")
ERR_LIMIT = ErrorReply("ERR LIMIT can't be negative")


def ordered_members(members: SetValue | dict[bytes, None]) -> list[bytes]:
    """A set's members in the order Redis lists them (numeric for an intset)."""
    if is_intset(members, len(members)):
        return sorted(members, key=int)
    return list(members)


def _scan_view(s: SetValue) -> ScanView:
    return ordered_members(s), None, encoding_name(s) == "intset"


def _members(s: SetValue, picked: list[bytes], flagged: bool) -> Reply:
    return list(picked)


class SetCommands(TypedKeyspace):
    """The set commands, as a mixin over :class:`~pyxos.kv.typed_keyspace.TypedKeyspace`."""

    def c_sadd(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        if s is None:
            s = self.create(argv[1], SetValue())
        before = len(s)
        for m in argv[2:]:
            s[m] = None
        if len(s) > before:  # Redis tells WATCHers only of a change
            self.changed(argv[1], s)
        return len(s) - before

    def c_srem(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        if s is None:
            return 0
        before = len(s)
        for m in argv[2:]:
            s.pop(m, 0)
        removed = before - len(s)
        if removed:
            self.changed(argv[1], s)
        return removed

    def c_smembers(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        return [] if s is None else list(ordered_members(s))

    def c_sismember(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        return int(s is not None and argv[2] in s)

    def c_smismember(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        return [int(s is not None and m in s) for m in argv[2:]]

    def c_scard(self, argv: Sequence[bytes]) -> Reply:
        s = self.value_of(argv[1], SetValue)
        return 0 if s is None else len(s)

    def c_spop(self, argv: Sequence[bytes]) -> Reply:
        if len(argv) > 3:
            return ERR_SYNTAX
        if len(argv) == 2:
            member = self.random_element(argv[1], SetValue)
            if member is not None:  # a draw, then an SREM (what Redis replicates SPOP as)
                self.c_srem([b"srem", argv[1], member])
            return member
        count = string2ll(argv[2])
        if count is None or count < 0:
            return ERR_POSITIVE
        s = self.value_of(argv[1], SetValue)
        if s is None or count == 0:
            return []
        members = ordered_members(s)
        # Drawn only when some are left: a count that takes them all uses no randomness.
        picked = members if count >= len(members) else self.random_picks(members, count)
        for m in picked:
            del s[m]
        self.changed(argv[1], s)
        return list(picked)

    def c_srandmember(self, argv: Sequence[bytes]) -> Reply:
        return self.random_members(argv, SetValue, None, ordered_members, _members)

    def c_smove(self, argv: Sequence[bytes]) -> Reply:
        src_key, dst_key, member = argv[1], argv[2], argv[3]
        if self.db.data.get(src_key) is None:
            return 0
        src = self.value_of(src_key, SetValue)
        dst = self.value_of(dst_key, SetValue)
        assert src is not None
        if src_key == dst_key:
            return int(member in src)
        if member not in src:
            return 0
        del src[member]
        self.changed(src_key, src)
        if dst is None:
            dst = self.create(dst_key, SetValue())
        dst[member] = None
        self.changed(dst_key, dst)
        return 1

    # --- algebra -------------------------------------------------------------------------------

    def _sets(self, keys: Sequence[bytes]) -> list[SetValue | None]:
        return [self.value_of(k, SetValue) for k in keys]

    def _inter(self, keys: Sequence[bytes]) -> dict[bytes, None]:
        sets = self._sets(keys)
        present = [s for s in sets if s is not None]
        if len(present) < len(sets):
            return {}
        smallest = min(present, key=len)
        others = [s for s in present if s is not smallest]
        return {m: None for m in smallest if all(m in o for o in others)}

    def _union(self, keys: Sequence[bytes]) -> dict[bytes, None]:
        out: dict[bytes, None] = {}
        for s in self._sets(keys):
            if s is not None:
                out.update(s)
        return out

    def _diff(self, keys: Sequence[bytes]) -> dict[bytes, None]:
        sets = self._sets(keys)
        first = sets[0]
        if first is None:
            return {}
        rest = [s for s in sets[1:] if s is not None]
        return {m: None for m in first if not any(m in o for o in rest)}

    def c_sinter(self, argv: Sequence[bytes]) -> Reply:
        return list(ordered_members(self._inter(argv[1:])))

    def c_sunion(self, argv: Sequence[bytes]) -> Reply:
        return list(ordered_members(self._union(argv[1:])))

    def c_sdiff(self, argv: Sequence[bytes]) -> Reply:
        return list(ordered_members(self._diff(argv[1:])))

    def _store(self, dst_key: bytes, result: dict[bytes, None]) -> Reply:
        self.delete(dst_key)
        if result:
            self.create(dst_key, SetValue(result))
        return len(result)

    def c_sinterstore(self, argv: Sequence[bytes]) -> Reply:
        return self._store(argv[1], self._inter(argv[2:]))

    def c_sunionstore(self, argv: Sequence[bytes]) -> Reply:
        return self._store(argv[1], self._union(argv[2:]))

    def c_sdiffstore(self, argv: Sequence[bytes]) -> Reply:
        return self._store(argv[1], self._diff(argv[2:]))

    def c_sintercard(self, argv: Sequence[bytes]) -> Reply:
        numkeys = string2ll(argv[1])
        if numkeys is None or numkeys <= 0:
            return ERR_NUMKEYS
        if numkeys > len(argv) - 2:
            return ERR_TOO_MANY_KEYS
        limit = 0
        i = 2 + numkeys
        while i < len(argv):
            if argv[i].lower() == b"limit" and i + 1 < len(argv):
                n = string2ll(argv[i + 1])
                if n is None or n < 0:
                    return ERR_LIMIT
                limit = n
                i += 2
            else:
                return ERR_SYNTAX
        count = len(self._inter(argv[2 : 2 + numkeys]))
        return min(count, limit) if limit else count

    def c_sscan(self, argv: Sequence[bytes]) -> Reply:
        return scan_container(argv, lambda key: self.value_of(key, SetValue), _scan_view)
