"""The admin port's membership routes, over a real socket, against a stand-in membership:
JSON in and out, 409 for a refusal, 400 for a bad body, 413 for a big one, 503 with no
leader, and the port's bearer token on these paths as on the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from membership_fake import FakeNode

from pyxos.runtime.errors import MembershipError, Unavailable, UnknownOutcome
from pyxos.server.admin import AdminServer

TOKEN = "s3cret"


class _Metrics:
    def follow(self, status: Any) -> None:
        pass


class _Node(FakeNode):
    def __init__(self) -> None:
        super().__init__()
        self.metrics = _Metrics()

    def status(self) -> dict[str, Any]:
        return {}


async def _request(
    port: int, method: str, path: str, body: bytes = b"", token: str | None = TOKEN
) -> tuple[int, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    ctype = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-type")]
    is_json = bool(ctype) and b"json" in ctype[0]
    return status, json.loads(payload) if is_json else payload


@pytest.fixture
async def admin() -> AsyncIterator[tuple[_Node, int]]:
    node = _Node()
    server = AdminServer(cast(Any, node), "127.0.0.1", 0, token=TOKEN)
    await server.start()
    assert server.address is not None
    try:
        yield node, server.address[1]
    finally:
        await server.close()


def _calls(node: _Node) -> list[tuple[Any, ...]]:
    return cast(list[tuple[Any, ...]], node.membership.calls)


async def test_get_members_is_the_rows_version_and_leader(admin: tuple[_Node, int]) -> None:
    node, port = admin
    status, body = await _request(port, "GET", "/members")
    assert status == 200
    assert body == {"version": 17, "leader": 1, "members": node.membership.rows()}


async def test_the_changes_reach_the_membership_with_their_arguments(
    admin: tuple[_Node, int],
) -> None:
    node, port = admin
    status, body = await _request(port, "POST", "/members", b'{"id": 5, "peer": "h:7385"}')
    assert status == 200 and body["slot"] == 42 and len(body["members"]) == 3
    add_learner = b'{"id": 6, "peer": "h:7386", "learner": true}'
    assert (await _request(port, "POST", "/members", add_learner))[0] == 200
    assert (await _request(port, "POST", "/members/6/promote"))[0] == 200
    assert (await _request(port, "DELETE", "/members/2"))[0] == 200
    status, body = await _request(port, "POST", "/leader/transfer", b'{"to": 2}')
    assert (status, body) == (200, {"leader": 2})
    assert _calls(node) == [
        ("add", 5, "h:7385", True),
        ("add", 6, "h:7386", False),
        ("promote", 6, "", False),
        ("remove", 2, "", False),
        ("transfer", 2),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/members", b"not json"),
        ("POST", "/members", b"[1, 2]"),
        ("POST", "/members", b'{"peer": "h:1"}'),
        ("POST", "/members", b'{"id": "5", "peer": "h:1"}'),
        ("POST", "/members", b'{"id": 0, "peer": "h:1"}'),
        ("POST", "/members", b'{"id": true, "peer": "h:1"}'),
        ("POST", "/members", b'{"id": 5, "peer": "nocolon"}'),
        ("POST", "/members", b'{"id": 5, "peer": "h:1", "learner": "yes"}'),
        ("POST", "/leader/transfer", b'{"to": -1}'),
        ("POST", "/leader/transfer", b"{}"),
    ],
)
async def test_a_bad_body_is_400_and_changes_nothing(
    admin: tuple[_Node, int], method: str, path: str, body: bytes
) -> None:
    node, port = admin
    status, reply = await _request(port, method, path, body)
    assert status == 400 and "error" in reply
    assert _calls(node) == []


async def test_a_body_over_the_limit_is_413_unread(admin: tuple[_Node, int]) -> None:
    node, port = admin
    assert (await _request(port, "POST", "/members", b" " * 5000))[0] == 413
    assert _calls(node) == []


async def test_unknown_member_paths_and_methods(admin: tuple[_Node, int]) -> None:
    _, port = admin
    assert (await _request(port, "POST", "/members/x/promote"))[0] == 404
    assert (await _request(port, "POST", "/members/3/demote"))[0] == 404
    assert (await _request(port, "PUT", "/members"))[0] == 405
    assert (await _request(port, "GET", "/leader/transfer"))[0] == 405


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (MembershipError("node 4 is already a member (voter)"), 409),
        (Unavailable("no leader within 30.0s"), 503),
        (UnknownOutcome("the add of node 4 was not seen chosen within 30.0s"), 504),
    ],
)
async def test_refusals_and_outages(admin: tuple[_Node, int], exc: Exception, status: int) -> None:
    node, port = admin
    node.membership.fail = cast(Any, exc)
    reply = await _request(port, "POST", "/members", b'{"id": 4, "peer": "h:1"}')
    assert reply == (status, {"error": str(exc)})
    reply = await _request(port, "POST", "/leader/transfer", b'{"to": 4}')
    assert reply == (status, {"error": str(exc)})


async def test_the_token_guards_the_membership_paths(admin: tuple[_Node, int]) -> None:
    node, port = admin
    assert (await _request(port, "GET", "/members", token=None))[0] == 401
    body = b'{"id": 5, "peer": "h:1"}'
    assert (await _request(port, "POST", "/members", body, token="wrong"))[0] == 403
    assert (await _request(port, "DELETE", "/members/2", token=None))[0] == 401
    assert _calls(node) == []
