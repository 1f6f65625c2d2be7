"""``pyxos member`` and ``pyxos leader``: the ``PAXOS`` command, asked of any endpoint.

Every node answers ``PAXOS`` (it forwards changes to the leader), so the first endpoint
that answers is asked; a refusal is final (the next node would refuse the same change),
but an endpoint that cannot be reached, or has no leader, passes the question on.
"""

from __future__ import annotations

import socket
from typing import Any

import hiredis

from pyxos.client.discovery import info_fields, parse_endpoints
from pyxos.resp.requests import encode_command

__all__ = ["MemberCommandError", "auth_command", "call", "members", "rows_of"]

PASS_ON = ("NOLEADER", "NODEFAILED", "LOADING")
"""Error codes after which the next endpoint is asked instead."""


class MemberCommandError(Exception):
    """The cluster refused the command; the message is its reason."""


def _ask(
    host: str, port: int, argvs: list[list[bytes]], timeout: float, auth: list[bytes] | None
) -> list[Any]:
    """The replies to ``argvs``, sent on one connection (so they come from one node),
    after ``auth`` has succeeded (waited for: on a refusal nothing else is sent)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        reader = hiredis.Reader()
        if auth:
            sock.sendall(encode_command(auth))
            (login,) = _read(sock, reader, 1)
            if isinstance(login, hiredis.ReplyError):
                # Every node has the same users: another endpoint would refuse it too.
                raise MemberCommandError(str(login))
        sock.sendall(b"".join(encode_command(argv) for argv in argvs))
        return _read(sock, reader, len(argvs))


def _read(sock: socket.socket, reader: hiredis.Reader, count: int) -> list[Any]:
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is not False:
            replies.append(reply)
            continue
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        reader.feed(chunk)
    return replies


def auth_command(user: str | None, password: str | None) -> list[bytes] | None:
    """The ``AUTH`` to send first (``None`` without a password), as ``redis-cli`` would."""
    if password is None:
        return None
    return [b"AUTH", *([user.encode()] if user else []), password.encode()]


def call(
    endpoints: str, *args: str | int, timeout: float = 40.0, auth: list[bytes] | None = None
) -> Any:
    """The reply of ``PAXOS args...`` from the first endpoint that can answer."""
    return _first(endpoints, [[b"PAXOS", *(str(a).encode() for a in args)]], timeout, auth)[0]


def members(
    endpoints: str, timeout: float = 10.0, auth: list[bytes] | None = None
) -> tuple[int | None, list[dict[str, Any]]]:
    """The membership version and the rows, as one node sees them (``PAXOS MEMBERS`` and
    ``INFO paxos`` on one connection); the version is ``None`` if the node does not say."""
    argvs = [[b"PAXOS", b"MEMBERS"], [b"INFO", b"paxos"]]
    rows, info = _first(endpoints, argvs, timeout, auth)
    version: int | None = None
    if isinstance(info, bytes):
        fields = info_fields(info)
        text = fields.get("membership_version", "")
        version = int(text) if text.isdigit() else None
    return version, rows_of(rows)


def _first(
    endpoints: str, argvs: list[list[bytes]], timeout: float, auth: list[bytes] | None
) -> list[Any]:
    tried: list[str] = []
    for host, port in parse_endpoints(endpoints):
        where = f"{host}:{port}"
        try:
            replies = _ask(host, port, argvs, timeout, auth)
        except (OSError, hiredis.ProtocolError) as exc:
            tried.append(f"{where}: {exc}")
            continue
        reply = replies[0]
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.split(" ", 1)[0] in PASS_ON:
                tried.append(f"{where}: {text}")
                continue
            raise MemberCommandError(text.removeprefix("ERR "))
        return replies
    raise ConnectionError("no endpoint answered: " + "; ".join(tried))


def rows_of(reply: Any) -> list[dict[str, Any]]:
    """``PAXOS MEMBERS`` rows (RESP2 flat field/value arrays) as dicts."""
    rows = []
    for flat in reply:
        row: dict[str, Any] = {}
        for key, value in zip(flat[::2], flat[1::2], strict=True):
            name = key.decode()
            row[name] = value.decode() if isinstance(value, bytes) else value
        row["leader"] = bool(row.get("leader"))
        caught = row.get("caught_up", "")
        row["caught_up"] = None if caught == "" else caught == "yes"
        if row.get("behind") == -1:
            row["behind"] = None
        rows.append(row)
    return rows
