"""What ACL rules need to know of the commands this server has: their categories and the
positions and access of their keys, taken from the command table (Redis 7.0's facts).

:func:`catalog` is the :class:`~pyxos.kv.acl_rules.AclCatalog` the replicated user table
applies ``+@category`` rules with; :func:`key_finder` says where a command's keys are and
whether each is read, written, or both (Redis's key specs), for ``%R~`` and ``%W~`` patterns.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pyxos.kv.acl_rules import READ, WRITE, AclCatalog, CatalogCommand
from pyxos.kv.commands import COMMANDS, SUBCOMMANDS, string2ll
from pyxos.server.command_table import INFO

__all__ = ["NO_AUTH", "KeyFinder", "arity", "catalog", "key_finder"]

KeyFinder = Callable[[Sequence[bytes]], list[tuple[int, int]]]
"""argv -> ``(position, READ|WRITE bits needed)`` of each key."""

_ADMIN = frozenset({"admin", "slow", "dangerous"})
_SLOW = frozenset({"slow"})
_EXTRA: Mapping[str, frozenset[str]] = {
    # Commands the generated table does not describe (categories as in Redis 7.0's COMMAND
    # INFO for ACL; CAS is pyxos's own compare-and-set, a string write like SET).
    "acl": _SLOW,
    "acl|cat": _SLOW,
    "acl|genpass": _SLOW,
    "acl|help": _SLOW,
    "acl|whoami": _SLOW,
    "cas": frozenset({"write", "string", "slow"}),
    # PAXOS is pyxos's membership command: changing the cluster is an admin's business,
    # reading who is in it is not.
    "paxos": _ADMIN,
    "paxos|members": _SLOW,
    "paxos|help": _SLOW,
    "paxos|add": _ADMIN,
    "paxos|promote": _ADMIN,
    "paxos|remove": _ADMIN,
    "paxos|transfer": _ADMIN,
}
NO_AUTH = frozenset({"auth", "hello", "quit", "reset"})
"""Commands whose ``no_auth`` flag lets every user run them, whatever its rules."""


def _info(name: str) -> list[Any] | None:
    parent, _, sub = name.partition("|")
    entry: Any = INFO.get(parent)
    if entry is None or not sub:
        return cast("list[Any] | None", entry)
    for child in entry[9]:
        if child[0] == name.encode():
            return cast("list[Any]", child)
    return None


def _categories(name: str) -> frozenset[str]:
    if name in _EXTRA:
        return _EXTRA[name]
    entry = _info(name)
    if entry is None:
        return _ADMIN if name.startswith("acl|") else _SLOW
    return frozenset(str(c).lstrip("@") for c in entry[6])


@functools.cache
def catalog() -> AclCatalog:
    """Every command and subcommand the server knows, with its ACL categories."""
    commands = []
    for raw in COMMANDS:
        name = raw.decode()
        subs = SUBCOMMANDS.get(raw, {})
        commands.append(
            CatalogCommand(
                name,
                _categories(name),
                tuple(CatalogCommand(s.name, _categories(s.name)) for s in subs.values()),
            )
        )
    return AclCatalog(commands)


def arity(name: str, default: int) -> int:
    """Redis's arity of command ``name`` (its table's, which ACL DRYRUN checks), or
    ``default`` for a command it does not describe."""
    entry = _info(name)
    return int(entry[1]) if entry is not None else default


def _need(flags: Any) -> int:
    names = {str(f) for f in flags}
    need = READ if "access" in names else 0
    if names & {"insert", "delete", "update"}:
        need |= WRITE
    return need


@functools.cache
def key_finder(name: str) -> KeyFinder | None:
    """How to find the keys of command ``name`` (a full name, ``object|encoding``), or None
    for a command without keys (Redis's getKeysUsingKeySpecs)."""
    entry = _info(name)
    if entry is None:
        spec = COMMANDS.get(name.encode())
        if spec is None or not spec.first_key:
            return None
        first, last, step = spec.first_key, spec.last_key, spec.step
        return lambda argv: [
            (i, READ | WRITE)
            for i in range(first, (len(argv) - 1 if last < 0 else last) + 1, step)
            if i < len(argv)
        ]
    specs = [(ks[b"begin_search"], ks[b"find_keys"], _need(ks[b"flags"])) for ks in entry[8]]
    if not specs:
        return None
    if name == "set":  # variable flags: Redis asks setGetKeys, which looks for GET
        return lambda argv: [
            (1, READ | WRITE if any(a.lower() == b"get" for a in argv[3:]) else WRITE)
        ]

    def find(argv: Sequence[bytes]) -> list[tuple[int, int]]:
        argc = len(argv)
        out: list[tuple[int, int]] = []
        for begin, keys, need in specs:
            if begin[b"type"] != b"index":
                return []
            first = begin[b"spec"][b"index"]
            fk = keys[b"spec"]
            if keys[b"type"] == b"range":
                lastkey, limit = fk[b"lastkey"], fk[b"limit"]
                if lastkey >= 0:
                    last = first + lastkey
                elif not limit:
                    last = argc + lastkey
                else:
                    last = first + ((argc - first) // limit + lastkey)
                step = fk[b"keystep"]
            elif keys[b"type"] == b"keynum":
                at = first + fk[b"keynumidx"]
                numkeys = string2ll(argv[at]) if at < argc else None
                if numkeys is None or numkeys < 0:
                    return []
                first += fk[b"firstkey"]
                last = first + numkeys - 1
                step = fk[b"keystep"]
            else:
                return []
            if last >= argc or last < first or first >= argc:
                return []  # an invalid spec: Redis then finds no keys at all
            out.extend((i, need) for i in range(first, last + 1, step))
        return out

    return find
