"""``--aclfile``: users a node starts with, in Redis's ACL file format.

Each line is ``user <name> <rule> ...`` as ACL LIST prints it; blank lines and lines
starting with ``#`` are skipped. The users become the node's *base* users (see
:mod:`pyxos.kv.acl`): every node of a cluster must be given the same file. ACL SETUSER and
ACL DELUSER then change them for the whole cluster, through the log; the file itself is
read at start only and never written.
"""

from __future__ import annotations

from pathlib import Path

from pyxos.kv.acl_rules import AclRuleError, new_user
from pyxos.runtime.config import ConfigError
from pyxos.server.acl_catalog import catalog

__all__ = ["load_acl_file"]

_SPACES = frozenset(b" \t\n\v\f\r\0")


def load_acl_file(path: str | Path) -> dict[bytes, bytes]:
    """``{name: rules}`` of every user in the file.

    Raises:
        ConfigError: the file cannot be read, or a line is not a valid user (the message
            names the file, the line and, as Redis does, the rule that failed).
    """
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the ACL file {path}: {exc}") from exc
    users: dict[bytes, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split()
        if not words or words[0].startswith(b"#"):
            continue
        where = f"{path}:{number}"
        if words[0] != b"user" or len(words) < 2:
            raise ConfigError(f"{where}: line should start with user keyword")
        name = words[1]
        if any(c in _SPACES for c in name):
            raise ConfigError(f"{where}: usernames can't contain spaces or null characters")
        if name in users:
            raise ConfigError(f"{where}: duplicate user '{name.decode(errors='replace')}' found")
        user = new_user()
        for rule in words[2:]:
            try:
                user.apply(rule, catalog())
            except AclRuleError as exc:
                shown = rule.decode("utf-8", "replace")
                raise ConfigError(
                    f"{where}: error in user declaration '{shown}': {exc.reason}"
                ) from exc
        users[name] = b" ".join(words[2:])
    return users
