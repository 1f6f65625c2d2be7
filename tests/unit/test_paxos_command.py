"""``PAXOS`` on the client port, against a stand-in membership: reply shapes under RESP2
and RESP3, Redis-style errors for bad arguments, refusals as ``-ERR <reason>``, and the
lines ``INFO paxos`` prints for the members."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import pytest
from membership_fake import FakeNode

from pyxos.kv.commands import check, lookup
from pyxos.runtime.errors import MembershipError, Unavailable
from pyxos.server.acl_catalog import _categories
from pyxos.server.command_info import INFO, _docs
from pyxos.server.connection_base import error
from pyxos.server.info import _members
from pyxos.server.paxos_commands import PaxosCommands


class _Conn(PaxosCommands):
    """Just what ``PAXOS`` reads of a connection."""

    def __init__(self, protocol: int) -> None:
        self.node = cast(Any, FakeNode())
        self.protocol = protocol

    def error_reply(self, exc: BaseException) -> bytes:
        return error(f"NOLEADER {exc}")


def _parse(raw: bytes, protocol: int) -> Any:
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


def _ask(conn: _Conn, *args: str | int) -> bytes:
    argv: Sequence[bytes] = [b"PAXOS", *(str(a).encode() for a in args)]
    return asyncio.run(_run(conn, argv))


async def _run(conn: _Conn, argv: Sequence[bytes]) -> bytes:
    # In a loop, as on a connection: a change's reply is a future.
    reply = conn.c_paxos(argv)
    return reply if isinstance(reply, bytes) else cast(bytes, await reply)


def test_members_is_flat_field_value_arrays_under_resp2() -> None:
    raw = _ask(_Conn(2), "MEMBERS")
    assert raw.startswith(b"*3\r\n*14\r\n")
    rows = _parse(raw, 2)
    first = dict(zip(rows[0][::2], rows[0][1::2], strict=True))
    assert first == {
        b"id": 1,
        b"address": b"10.0.0.1:7380",
        b"role": b"voter",
        b"leader": 1,
        b"caught_up": b"yes",
        b"behind": 0,
        b"since": 0,
    }
    learner = dict(zip(rows[2][::2], rows[2][1::2], strict=True))
    assert learner[b"role"] == b"learner"
    assert learner[b"caught_up"] == b"" and learner[b"behind"] == -1  # unknown here


def test_members_is_an_array_of_maps_under_resp3() -> None:
    raw = _ask(_Conn(3), "members")
    assert raw.startswith(b"*3\r\n%7\r\n")
    rows = _parse(raw, 3)
    assert [r[b"id"] for r in rows] == [1, 2, 4]
    assert rows[1][b"caught_up"] == b"no" and rows[1][b"behind"] == 1200


@pytest.mark.parametrize("protocol", [2, 3])
def test_add_without_learner_auto_promotes_and_answers_slot_version_members(
    protocol: int,
) -> None:
    conn = _Conn(protocol)
    raw = _ask(conn, "ADD", 5, "10.0.0.5:7380")
    assert conn.node.membership.calls == [("add", 5, "10.0.0.5:7380", True)]
    reply = _parse(raw, protocol)
    fields = reply if protocol == 3 else dict(zip(reply[::2], reply[1::2], strict=True))
    assert fields[b"slot"] == 42 and fields[b"version"] == 42
    assert len(fields[b"members"]) == 3


def test_add_learner_stays_a_learner_and_other_changes_pass_the_id() -> None:
    conn = _Conn(2)
    _ask(conn, "ADD", 5, "[::1]:7380", "learner")
    _ask(conn, "PROMOTE", 5)
    _ask(conn, "REMOVE", 2)
    assert _ask(conn, "TRANSFER", 2) == b":2\r\n"
    assert conn.node.membership.calls == [
        ("add", 5, "[::1]:7380", False),
        ("promote", 5, "", False),
        ("remove", 2, "", False),
        ("transfer", 2),
    ]


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        (("ADD", 5), b"-ERR wrong number of arguments for 'paxos|add' command\r\n"),
        (
            ("ADD", 5, "h:1", "x", "y"),
            b"-ERR wrong number of arguments for 'paxos|add' command\r\n",
        ),
        (("PROMOTE",), b"-ERR wrong number of arguments for 'paxos|promote' command\r\n"),
        (("REMOVE", 1, 2), b"-ERR wrong number of arguments for 'paxos|remove' command\r\n"),
        (("TRANSFER",), b"-ERR wrong number of arguments for 'paxos|transfer' command\r\n"),
        (("MEMBERS", "x"), b"-ERR wrong number of arguments for 'paxos|members' command\r\n"),
        (("HELP", "x"), b"-ERR wrong number of arguments for 'paxos|help' command\r\n"),
        (("NOPE",), b"-ERR unknown subcommand 'NOPE'. Try PAXOS HELP.\r\n"),
        (("ADD", "x", "h:1"), b"-ERR node ids are positive integers\r\n"),
        (("ADD", 0, "h:1"), b"-ERR node ids are positive integers\r\n"),
        (("PROMOTE", "-3"), b"-ERR node ids are positive integers\r\n"),
        (("REMOVE", "1.5"), b"-ERR node ids are positive integers\r\n"),
        (("TRANSFER", "99999999999999999999"), b"-ERR node ids are positive integers\r\n"),
        (("ADD", 5, "nocolon"), b"-ERR bad peer address 'nocolon': expected HOST:PORT\r\n"),
        (("ADD", 5, "h:70000"), b"-ERR bad peer address 'h:70000': expected HOST:PORT\r\n"),
        (
            ("ADD", 5, "h:1", "VOTER"),
            b"-ERR syntax error: PAXOS ADD <id> <host:port> [LEARNER]\r\n",
        ),
    ],
)
def test_bad_arguments_get_redis_style_errors_and_change_nothing(
    args: tuple[str | int, ...], reply: bytes
) -> None:
    conn = _Conn(2)
    assert _ask(conn, *args) == reply
    assert conn.node.membership.calls == []


def test_a_refusal_is_err_with_the_protocols_reason() -> None:
    conn = _Conn(3)
    conn.node.membership.fail = MembershipError("node 4 is already a member (voter)")
    assert _ask(conn, "ADD", 4, "h:1") == b"-ERR node 4 is already a member (voter)\r\n"
    conn.node.membership.fail = MembershipError("node 3 is the last voter: it cannot be removed")
    assert _ask(conn, "TRANSFER", 3) == b"-ERR node 3 is the last voter: it cannot be removed\r\n"


def test_no_leader_goes_through_the_connections_error_reply() -> None:
    conn = _Conn(2)
    conn.node.membership.fail = Unavailable("no leader within 30.0s")
    assert _ask(conn, "REMOVE", 2) == b"-NOLEADER no leader within 30.0s\r\n"


def test_help_lists_every_subcommand() -> None:
    lines = _parse(_ask(_Conn(2), "HELP"), 2)
    text = b"\n".join(lines)
    for sub in (b"MEMBERS", b"ADD", b"PROMOTE", b"REMOVE", b"TRANSFER", b"HELP"):
        assert sub in text


@pytest.mark.parametrize(
    ("args", "reply"),
    [
        ((), "ERR wrong number of arguments for 'paxos' command"),
        (("nope",), "ERR unknown subcommand 'nope'. Try PAXOS HELP."),
        (("add", "5"), "ERR wrong number of arguments for 'paxos|add' command"),
        (("promote",), "ERR wrong number of arguments for 'paxos|promote' command"),
        (("members", "x"), "ERR wrong number of arguments for 'paxos|members' command"),
    ],
)
def test_the_command_table_checks_paxos_arity_before_it_runs(
    args: tuple[str, ...], reply: str
) -> None:
    assert str(check([b"PAXOS", *(a.encode() for a in args)])) == reply


def test_paxos_is_registered_with_its_subcommands_and_acl_categories() -> None:
    spec = lookup(b"paxos")
    assert spec is not None and spec.arity == -2
    assert {s.name for s in spec.subcommands} == {
        f"paxos|{s}" for s in ("members", "add", "promote", "remove", "transfer", "help")
    }
    for sub in ("add", "promote", "remove", "transfer"):
        assert {"admin", "slow", "dangerous"} <= _categories(f"paxos|{sub}")
    assert "admin" not in _categories("paxos|members")
    assert INFO["paxos"][1] == -2


def test_info_paxos_lists_version_and_a_line_per_member_that_redis_py_parses() -> None:
    from redis._parsers.helpers import parse_info

    lines = _members(cast(Any, FakeNode()))
    info = parse_info("\r\n".join(["# Paxos", *lines]).encode())
    assert info["membership_version"] == 17
    assert info["learners"] == 4
    assert info["member_1"] == {
        "address": "10.0.0.1:7380",
        "role": "voter",
        "leader": 1,
        "caught_up": "yes",
    }
    assert info["member_4"]["role"] == "learner"


def test_command_docs_summarise_paxos_and_each_subcommand() -> None:
    doc = _docs(cast(Any, lookup(b"paxos")))
    assert b"members" in cast(bytes, doc[b"summary"])
    subs = cast(dict[bytes, dict[bytes, bytes]], doc[b"subcommands"])
    assert set(subs) == {
        f"paxos|{s}".encode() for s in ("members", "add", "promote", "remove", "transfer", "help")
    }
    assert all(sub[b"summary"] and sub[b"group"] == b"cluster" for sub in subs.values())
