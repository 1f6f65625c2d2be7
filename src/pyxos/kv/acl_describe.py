"""How a user is written out: the line ACL LIST prints, ACL GETUSER's fields, and the form
the replicated table stores.

ACL LIST's command rules are computed from the permissions, as Redis 7.0 does: start from
``+@all`` (when the user may run commands added in the future) or ``-@all``, add the
category that best fits what is left until none fits, then name single commands. The order
of the single commands is the catalog's (Redis's is its hash table's, which changes with
each start). The stored form keeps the rules as given instead (Redis 7.2 keeps them so
too), so that a category still covers the commands a later version adds to it.
"""

from __future__ import annotations

from pyxos.kv.acl_rules import BOTH, CATEGORIES, READ, WRITE, AclCatalog, CatalogCommand, User

__all__ = [
    "describe",
    "describe_channels",
    "describe_commands",
    "describe_keys",
    "flag_names",
    "stored_form",
]


def describe_keys(user: User) -> bytes:
    if user.allkeys:
        return b"~*"
    names = {READ: b"%R~", WRITE: b"%W~", BOTH: b"~"}
    return b" ".join(names[f] + p for p, f in user.patterns)


def describe_channels(user: User) -> bytes:
    if user.allchannels:
        return b"&*"
    return b" ".join(b"&" + c for c in user.channels)


def describe_commands(user: User, catalog: AclCatalog) -> str:
    """The command rules of ``user`` (Redis 7.0's ACLDescribeSelectorCommandRules)."""
    additive = not user.future
    rules = ["-@all" if additive else "+@all"]
    fake: set[str] = set() if additive else set(catalog.all_names)
    temp = set(user.allowed)
    applied: set[str] = set()
    while True:
        best, mindiff, maxsame = "", 1 << 62, 0
        for category in CATEGORIES:
            if category in applied:
                continue
            members = catalog.in_category(category)
            on = sum(1 for c in members if c.name in temp)
            off = len(members) - on
            diff, same = (off, on) if additive else (on, off)
            if same > diff and (diff < mindiff or (diff == mindiff and same > maxsame)):
                best, mindiff, maxsame = category, diff, same
        if not best:
            break
        for cmd in catalog.in_category(best):
            _set(fake, cmd, additive)
            _set(temp, cmd, not additive)
        rules.append(("+@" if additive else "-@") + best)
        applied.add(best)
    for cmd in catalog.commands:
        for one in (cmd, *cmd.subcommands):
            mine = one.name in user.allowed
            if mine != (one.name in fake):
                rules.append(("+" if mine else "-") + one.name)
                _set(fake, one, mine)
        if cmd.name not in user.allowed:
            for arg in user.firstargs.get(cmd.name, ()):
                rules.append(f"+{cmd.name}|{arg.decode('utf-8', 'surrogateescape')}")
    return " ".join(rules)


def _set(bits: set[str], cmd: CatalogCommand, allow: bool) -> None:
    names = [cmd.name, *(s.name for s in cmd.subcommands)]
    if allow:
        bits.update(names)
    else:
        bits.difference_update(names)


def flag_names(user: User) -> list[str]:
    """The user's flags as ACL GETUSER lists them, in Redis's order."""
    flags = ["on" if user.enabled else "off"]
    if user.nopass:
        flags.append("nopass")
    if user.sanitize == "skip-sanitize-payload":
        flags.append(user.sanitize)
    if user.sanitize == "sanitize-payload":
        flags.append(user.sanitize)
    return flags


def describe(user: User, catalog: AclCatalog) -> bytes:
    """The rules that recreate ``user`` from nothing: ACL LIST's line after the name."""
    parts = [f.encode() for f in flag_names(user)]
    parts += [b"#" + p.encode() for p in user.passwords]
    keys = describe_keys(user)
    if keys:
        parts.append(keys)
    if user.allchannels:
        parts.append(b"&*")
    else:
        parts.append(b"resetchannels")
        parts += [b"&" + c for c in user.channels]
    parts.append(describe_commands(user, catalog).encode())
    return b" ".join(parts)


def stored_form(user: User) -> bytes:
    """The rules that recreate ``user``, with its command rules as they were given (what
    the replicated table keeps; ACL LIST shows :func:`describe` instead)."""
    parts = [f.encode() for f in flag_names(user)]
    parts += [b"#" + p.encode() for p in user.passwords]
    keys = describe_keys(user)
    if keys:
        parts.append(keys)
    parts.append(describe_channels(user) if user.allchannels else b"resetchannels")
    if not user.allchannels:
        parts += [b"&" + c for c in user.channels]
    parts.append(b"+@all" if user.future else b"-@all")
    parts += [r.encode("utf-8", "surrogateescape") for r in user.rules]
    return b" ".join(parts)
