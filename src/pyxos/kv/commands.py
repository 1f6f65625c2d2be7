"""How the server must route a request: by the command table (:mod:`pyxos.kv.command_specs`).

The server consults this *before* replicating anything, for two reasons:

- a command with an unknown name or a wrong argument count gets Redis's exact error at
  once, instead of costing a round of Paxos to produce the same error on every replica;
- the kind decides the path: a ``WRITE`` goes through the log, a ``READ`` is served from the
  local state after a read-index round (or, equally correct but slower, through the log), and
  a ``LOCAL`` command (PING, HELLO, AUTH...) is about the connection and never touches the
  replicated state.

This module is pure (no state, no I/O) so the server, the state machine and tests share one
definition of arity and error text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from pyxos.kv.command_specs import COMMANDS, SUBCOMMANDS, CommandKind, CommandSpec, lookup
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import ErrorReply, encode_resp2

__all__ = [
    "COMMANDS",
    "SUBCOMMANDS",
    "Classification",
    "CommandKind",
    "CommandSpec",
    "arity_error",
    "check",
    "classify",
    "lookup",
    "string2ll",
    "unknown_command_error",
    "unknown_subcommand_error",
]


def _c_string(arg: bytes, limit: int) -> bytes:
    # Redis formats these with printf("%.*s"), which stops at a NUL byte and truncates.
    nul = arg.find(b"\0")
    if nul >= 0:
        arg = arg[:nul]
    return arg[:limit]


def unknown_command_error(argv: Sequence[bytes]) -> ErrorReply:
    """Redis 7's reply to an unknown command, byte for byte (``commandCheckExistence``).

    ``ERR unknown command 'FOO', with args beginning with: 'a' 'b' ``: the name as the client
    spelled it (at most 128 bytes), then each argument quoted and followed by a space (so
    the text ends with a space) while the list is under 128 bytes, each argument cut to
    what is left of those 128. CR and LF become spaces so the reply stays one line.
    """
    args = b""
    for arg in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'" + _c_string(arg, 128 - len(args)) + b"' "
    name = _c_string(argv[0], 128) if argv else b""
    text = b"ERR unknown command '" + name + b"', with args beginning with: " + args
    text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    # surrogateescape: arbitrary client bytes survive the round trip through str unchanged.
    return ErrorReply(text.decode("utf-8", "surrogateescape"))


def arity_error(name: str) -> ErrorReply:
    """``ERR wrong number of arguments for 'get' command`` (always the lower-case name)."""
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


class Classification(NamedTuple):
    """What :func:`classify` decided. ``error`` is set exactly when ``kind`` is INVALID; it
    is the complete error reply (identical in RESP2 and RESP3), ready to write."""

    kind: CommandKind
    spec: CommandSpec | None
    error: bytes | None


_EMPTY = Classification(CommandKind.INVALID, None, b"-ERR empty command\r\n")


def unknown_subcommand_error(argv: Sequence[bytes]) -> ErrorReply:
    """``ERR unknown subcommand 'x'. Try OBJECT HELP.`` (processCommand's wording)."""
    text = (
        b"ERR unknown subcommand '"
        + _c_string(argv[1], 128)
        + b"'. Try "
        + argv[0].upper()
        + b" HELP."
    )
    text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    return ErrorReply(text.decode("utf-8", "surrogateescape"))


def check(argv: Sequence[bytes]) -> CommandSpec | ErrorReply:
    """The spec that ``argv`` names (a subcommand's own, for containers), or the error reply
    Redis gives for an unknown name, an unknown subcommand or a wrong argument count.

    ``argv`` must not be empty.
    """
    spec = COMMANDS.get(argv[0])
    if spec is None:
        spec = COMMANDS.get(argv[0].lower())
        if spec is None:
            return unknown_command_error(argv)
    if spec.subcommands and len(argv) >= 2:
        sub = SUBCOMMANDS[spec.name.encode()].get(argv[1].lower())
        if sub is None:
            return unknown_subcommand_error(argv)
        spec = sub
    if not spec.arity_ok(len(argv)) or (spec.step == 2 and len(argv) % 2 == 0):
        # The second test is MSET/MSETNX with a key missing its value, which Redis also
        # reports as wrong arity (msetGenericCommand).
        return arity_error(spec.name)
    return spec


_ROUTES: Mapping[bytes, Classification] = {
    name: Classification(spec.kind, spec, None) for name, spec in COMMANDS.items()
}
"""One ready classification per command, so routing a command allocates nothing."""


def classify(argv: Sequence[bytes]) -> Classification:
    """Route a parsed command: WRITE, READ, LOCAL, or INVALID with the error to send.

    Checks the name and the arity only; option syntax (``SET k v NX XX``) is checked when the
    command executes, deterministically, like every other reply.
    """
    if not argv:
        return _EMPTY
    route = _ROUTES.get(argv[0])
    if route is None:
        route = _ROUTES.get(argv[0].lower())
    if route is not None:
        spec = route.spec
        assert spec is not None
        argc = len(argv)
        if (
            not spec.subcommands
            and (argc == spec.arity if spec.arity > 0 else argc >= -spec.arity)
            and not (spec.step == 2 and argc % 2 == 0)
        ):
            return route
    checked = check(argv)
    if isinstance(checked, ErrorReply):
        return Classification(CommandKind.INVALID, lookup(argv[0]), encode_resp2(checked))
    return Classification(checked.kind, checked, None)
