"""pyxos.kv: the replicated Redis-compatible key-value state machine.

- :class:`KVStateMachine`: the :class:`~pyxos.core.statemachine.StateMachine` itself;
- :func:`encode_request` / :func:`decode_request`: the log entry format (with the
  exactly-once session id and sequence number);
- :func:`classify` and :data:`COMMANDS`: arity and routing (write / read / connection-local)
  for the server, so bad commands are refused before they cost a Paxos round;
- :func:`to_resp3`: a stored RESP2 reply as RESP3 (the codec itself is :mod:`pyxos.resp`).

Inside, the state (16 databases, TTLs, the replicated clock) is :mod:`~pyxos.kv.keyspace`;
the commands are mixins by concern: :mod:`~pyxos.kv.strings`, :mod:`~pyxos.kv.bits`,
:mod:`~pyxos.kv.expiry`, :mod:`~pyxos.kv.keys`, :mod:`~pyxos.kv.transactions` and
:mod:`~pyxos.kv.scripting` (Lua, run by :mod:`~pyxos.kv.lua_engine`); snapshots and the
digest are :mod:`~pyxos.kv.snapshot`.
"""

from pyxos.kv.commands import (
    COMMANDS,
    Classification,
    CommandKind,
    CommandSpec,
    arity_error,
    classify,
    lookup,
    string2ll,
    unknown_command_error,
)
from pyxos.kv.request import NO_SESSION, Request, decode_request, encode_request
from pyxos.kv.statemachine import KVStateMachine
from pyxos.resp.replies import to_resp3

__all__ = [
    "COMMANDS",
    "NO_SESSION",
    "Classification",
    "CommandKind",
    "CommandSpec",
    "KVStateMachine",
    "Request",
    "arity_error",
    "classify",
    "decode_request",
    "encode_request",
    "lookup",
    "string2ll",
    "to_resp3",
    "unknown_command_error",
]
