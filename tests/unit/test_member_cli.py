"""``pyxos member`` and ``pyxos leader`` against nodes that run the real ``PAXOS`` command
over a stand-in membership: what each prints (table, ``--json``, the start line of an
added node), exit status 1 with the reason on stderr for a refusal, and endpoints that
cannot answer passed over for the next."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import hiredis
import pytest
from click.testing import CliRunner
from membership_fake import ROWS, FakeNode

from pyxos.cli import main
from pyxos.client.members import rows_of
from pyxos.runtime.errors import MembershipError, PyxosError, Unavailable
from pyxos.server.connection_base import error
from pyxos.server.info import _members
from pyxos.server.paxos_commands import PaxosCommands


class _Conn(PaxosCommands):
    def __init__(self, node: FakeNode) -> None:
        self.node = cast(Any, node)
        self.protocol = 2

    def error_reply(self, exc: BaseException) -> bytes:
        return error(f"NOLEADER {exc}")


class _Node(threading.Thread):
    """A RESP server on a thread that answers PAXOS as a node would (through
    :class:`PaxosCommands`), one request per connection as the CLI asks."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.fake = FakeNode()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.asked: list[list[bytes]] = []

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while chunk := await reader.read(4096):
            parser.feed(chunk)
            while (argv := parser.gets()) is not False:
                writer.write(await self._answer(argv))
        writer.close()

    async def _answer(self, argv: list[bytes]) -> bytes:
        self.asked.append(argv)
        if argv[0].upper() == b"AUTH":
            if argv[1:] in ([b"ops", b"pw"], [b"pw"]):
                return b"+OK\r\n"
            return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        if argv[0].upper() == b"INFO":
            text = "\r\n".join(["# Paxos", *_members(cast(Any, self.fake))]).encode()
            return b"$%d\r\n%s\r\n" % (len(text), text)
        reply = _Conn(self.fake).c_paxos(argv)
        return reply if isinstance(reply, bytes) else cast(bytes, await reply)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)


@pytest.fixture
def node() -> Iterator[_Node]:
    server = _Node()
    server.start()
    assert server.ready.wait(5)
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return cast(int, s.getsockname()[1])


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def _eps(node: _Node) -> str:
    return f"127.0.0.1:{node.port}"


def test_member_list_json_is_the_rows(node: _Node) -> None:
    result = _cli("member", "list", "--endpoints", _eps(node), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"version": 17, "members": ROWS}


def test_member_list_table_shows_role_caught_up_and_the_leader(node: _Node) -> None:
    result = _cli("member", "list", "--endpoints", _eps(node))
    assert result.exit_code == 0, result.output
    assert "version 17" in result.output
    lines = {
        word: line
        for line in result.output.splitlines()
        for word in line.split()
        if word.startswith("10.0.0.")
    }
    assert "voter" in lines["10.0.0.1:7380"] and "*" in lines["10.0.0.1:7380"]
    assert "1200" in lines["10.0.0.2:7380"] and "*" not in lines["10.0.0.2:7380"]
    assert "learner" in lines["10.0.0.4:7380"] and "?" in lines["10.0.0.4:7380"]


def test_member_add_prints_the_start_line_with_the_voters_to_join(node: _Node) -> None:
    result = _cli(
        "member", "add", "--id", "5", "--peer", "10.0.0.5:7380", "--endpoints", _eps(node)
    )
    assert result.exit_code == 0, result.output
    assert node.fake.membership.calls == [("add", 5, "10.0.0.5:7380", True)]
    assert (
        "pyxos serve --id 5 --join 10.0.0.1:7380,10.0.0.2:7380 --peer 10.0.0.5:7380 "
        "--port PORT --admin ADMIN_PORT --data-dir EMPTY_DIR"
    ) in result.output
    assert "PORT, ADMIN_PORT" in result.output  # says what to fill in


def test_member_add_learner_and_json(node: _Node) -> None:
    args = ("member", "add", "--id", "5", "--peer", "h:1", "--learner", "--json")
    result = _cli(*args, "--endpoints", _eps(node))
    assert result.exit_code == 0, result.output
    assert node.fake.membership.calls == [("add", 5, "h:1", False)]
    out = json.loads(result.output)
    assert out["slot"] == 42 and out["start"].startswith("pyxos serve --id 5 --join ")


def test_promote_remove_and_transfer_say_what_happened(node: _Node) -> None:
    eps = _eps(node)
    assert "node 4 is a voter" in _cli("member", "promote", "--id", "4", "--endpoints", eps).output
    assert "node 2 is removed" in _cli("member", "remove", "--id", "2", "--endpoints", eps).output
    result = _cli("leader", "transfer", "--to", "2", "--endpoints", eps, "--json")
    assert json.loads(result.output) == {"leader": 2}
    assert node.fake.membership.calls == [
        ("promote", 4, "", False),
        ("remove", 2, "", False),
        ("transfer", 2),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("member", "add", "--id", "2", "--peer", "h:1"),
        ("member", "promote", "--id", "9"),
        ("member", "remove", "--id", "1"),
        ("leader", "transfer", "--to", "4"),
    ],
)
def test_a_refusal_exits_1_with_the_reason_on_stderr(node: _Node, args: tuple[str, ...]) -> None:
    node.fake.membership.fail = MembershipError("another membership change is in progress; retry")
    result = CliRunner().invoke(main, [*args, "--endpoints", _eps(node)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "another membership change is in progress; retry" in result.stderr


def test_a_bad_peer_address_is_refused_by_the_node(node: _Node) -> None:
    result = _cli("member", "add", "--id", "5", "--peer", "nocolon", "--endpoints", _eps(node))
    assert result.exit_code == 1 and "bad peer address 'nocolon'" in result.output
    assert node.fake.membership.calls == []


def test_endpoints_that_cannot_answer_are_passed_over(node: _Node) -> None:
    leaderless = _Node()
    leaderless.start()
    assert leaderless.ready.wait(5)
    try:
        leaderless.fake.membership.fail = cast(PyxosError, Unavailable("no leader"))
        eps = f"127.0.0.1:{_closed_port()},127.0.0.1:{leaderless.port},{_eps(node)}"
        result = _cli("member", "remove", "--id", "2", "--endpoints", eps)
        assert result.exit_code == 0, result.output
        assert node.fake.membership.calls == [("remove", 2, "", False)]
    finally:
        leaderless.stop()


def test_no_endpoint_answering_exits_1() -> None:
    result = _cli("member", "list", "--endpoints", f"127.0.0.1:{_closed_port()}")
    assert result.exit_code == 1 and "no endpoint answered" in result.output


def test_rows_of_reads_resp2_rows_back_into_the_runtimes_shape() -> None:
    learner = {b"id": 4, b"address": b"h:1", b"role": b"learner", b"leader": 0}
    learner |= {b"caught_up": b"", b"behind": -1, b"since": 9}
    voter = {b"id": 1, b"address": b"h:2", b"role": b"voter", b"leader": 1}
    voter |= {b"caught_up": b"no", b"behind": 3, b"since": 0}
    flat = [[x for pair in row.items() for x in pair] for row in (learner, voter)]
    assert rows_of(flat) == [
        {"id": 4, "address": "h:1", "role": "learner", "leader": False}
        | {"caught_up": None, "behind": None, "since": 9},
        {"id": 1, "address": "h:2", "role": "voter", "leader": True}
        | {"caught_up": False, "behind": 3, "since": 0},
    ]


def test_help_texts_say_what_each_command_does() -> None:
    for args, words in [
        (("member", "--help"), "members"),
        (("member", "list", "--help"), "voter or learner"),
        (("member", "add", "--help"), "command line"),
        (("member", "promote", "--help"), "learner a voter"),
        (("member", "remove", "--help"), "Remove a node"),
        (("leader", "transfer", "--help"), "Hand leadership"),
    ]:
        result = _cli(*args)
        assert result.exit_code == 0 and words in result.output, args
        assert "--endpoints" in result.output or args == ("member", "--help")


def test_user_and_password_auth_first_on_the_same_connection(node: _Node) -> None:
    eps = _eps(node)
    result = _cli("member", "list", "--user", "ops", "--password", "pw", "--endpoints", eps)
    assert result.exit_code == 0, result.output
    assert node.asked == [
        [b"AUTH", b"ops", b"pw"],
        [b"PAXOS", b"MEMBERS"],
        [b"INFO", b"paxos"],
    ]
    node.asked.clear()
    result = CliRunner().invoke(
        main, ["leader", "transfer", "--to", "2", "--endpoints", eps], env={"PYXOS_PASSWORD": "pw"}
    )
    assert result.exit_code == 0, result.output
    assert node.asked == [[b"AUTH", b"pw"], [b"PAXOS", b"TRANSFER", b"2"]]


def test_a_wrong_password_exits_1_and_changes_nothing(node: _Node) -> None:
    args = ["member", "remove", "--id", "2", "--password", "nope", "--endpoints", _eps(node)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "WRONGPASS" in result.stderr
    assert node.fake.membership.calls == []
