"""``PAXOS``: the cluster's membership and leadership, on the client port.

Named and shaped like Redis's ``CLUSTER``: ``PAXOS MEMBERS`` lists the members,
``PAXOS ADD <id> <host:port> [LEARNER]``, ``PAXOS PROMOTE <id>``, ``PAXOS REMOVE <id>`` and
``PAXOS TRANSFER <id>`` change them. Any node may be asked: the protocol forwards the
request to the leader, and the reply comes once the change is chosen and in effect (or
with the protocol's reason it was refused, as ``-ERR``). ``pyxos member`` and
``pyxos leader`` are the command line over these. ACL category ``@admin`` (but
``MEMBERS`` and ``HELP``, which only read), so a restricted user cannot change the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pyxos.kv.commands import unknown_subcommand_error
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import Reply
from pyxos.runtime.errors import MembershipError, PyxosError
from pyxos.runtime.membership import parse_address
from pyxos.server.connection_base import ConnectionBase, Reply_, error

__all__ = ["PaxosCommands", "member_rows"]

CHANGE_TIMEOUT = 30.0
"""Seconds a change may take: a learner's promotion waits for it to catch up first."""

HELP = [
    "PAXOS <subcommand> [<arg> ...]. Subcommands are:",
    "MEMBERS",
    "    Every member: id, peer address, voter or learner, caught up (known on the",
    "    leader), leader mark.",
    "ADD <id> <host:port> [LEARNER]",
    "    Add a node as a learner; it becomes a voter once caught up, unless LEARNER.",
    "PROMOTE <id>",
    "    Make a learner a voter (refused while it lags).",
    "REMOVE <id>",
    "    Remove a node (the leader hands off first if it is the one).",
    "TRANSFER <id>",
    "    Hand leadership to voter <id>.",
    "HELP",
    "    Print this help.",
]


def member_rows(rows: list[dict[str, Any]]) -> list[Reply]:
    """The rows of ``node.membership.rows()`` as RESP maps (bytes keys; flags as 0/1)."""
    out: list[Reply] = []
    for row in rows:
        caught_up = row["caught_up"]
        out.append(
            {
                b"id": row["id"],
                b"address": row["address"].encode(),
                b"role": row["role"].encode(),
                b"leader": int(row["leader"]),
                b"caught_up": b"" if caught_up is None else b"yes" if caught_up else b"no",
                b"behind": -1 if row["behind"] is None else row["behind"],
                b"since": row["since"],
            }
        )
    return out


class PaxosCommands(ConnectionBase):
    """The ``PAXOS`` command, as a mixin of the connection."""

    def c_paxos(self, argv: Sequence[bytes]) -> Reply_:
        sub = argv[1].lower()
        args = argv[2:]
        if sub == b"help" and not args:
            return self.encode([line.encode() for line in HELP])
        if sub == b"members" and not args:
            return self.encode(member_rows(self.node.membership.rows()))
        if sub == b"add" and len(args) in (2, 3):
            learner = len(args) == 3
            if learner and args[2].lower() != b"learner":
                return error("ERR syntax error: PAXOS ADD <id> <host:port> [LEARNER]")
            address = args[1].decode("utf-8", "replace")
            if parse_address(address) is None:
                return error(f"ERR bad peer address '{address}': expected HOST:PORT")
            return self._change("add", args[0], address, auto_promote=not learner)
        if sub in (b"promote", b"remove") and len(args) == 1:
            return self._change(sub.decode(), args[0])
        if sub == b"transfer" and len(args) == 1:
            node = _node_id(args[0])
            if node is None:
                return _BAD_ID
            return asyncio.ensure_future(self._transfer(node))
        if sub in (b"help", b"members", b"add", b"promote", b"remove", b"transfer"):
            name = sub.decode("utf-8", "replace")
            return error(f"ERR wrong number of arguments for 'paxos|{name}' command")
        # As the client spelled it, as Redis echoes it (and the command table does).
        return error(str(unknown_subcommand_error([b"PAXOS", argv[1]])))

    def _change(self, kind: str, raw_id: bytes, address: str = "", **kw: bool) -> Reply_:
        node = _node_id(raw_id)
        if node is None:
            return _BAD_ID
        return asyncio.ensure_future(self._run_change(kind, node, address, kw))

    async def _run_change(self, kind: str, node: int, address: str, kw: dict[str, bool]) -> bytes:
        try:
            done = await self.node.membership.change(
                kind, node, address, timeout=CHANGE_TIMEOUT, **kw
            )
        except MembershipError as exc:
            return error(f"ERR {exc}")
        except PyxosError as exc:
            return self.error_reply(exc)
        return self.encode(
            {
                b"slot": done["slot"],
                b"version": done["version"],
                b"members": member_rows(done["members"]),
            }
        )

    async def _transfer(self, node: int) -> bytes:
        try:
            leader = await self.node.membership.transfer(node, timeout=CHANGE_TIMEOUT)
        except MembershipError as exc:
            return error(f"ERR {exc}")
        except PyxosError as exc:
            return self.error_reply(exc)
        return self.encode(leader)


_BAD_ID = error("ERR node ids are positive integers")


def _node_id(raw: bytes) -> int | None:
    value = string2ll(raw)
    return value if value is not None and value > 0 else None
