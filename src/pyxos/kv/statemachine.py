"""The replicated key-value store: a deterministic :class:`~pyxos.core.statemachine.StateMachine`.

Every replica applies the same log entries in the same order and must end in the same state
with the same replies, so nothing here reads a clock, draws an unseeded random number, or
iterates a ``set``. Time comes from the requests themselves (:mod:`pyxos.kv.keyspace`).
Python dicts iterate in insertion order, which is itself a function of the applied history,
so iterating them is deterministic; snapshots keep that order, and the state digest, which
must be equal on every converged replica whatever its history, sorts.

The commands live in mixins by concern (:mod:`~pyxos.kv.strings`, :mod:`~pyxos.kv.expiry`,
:mod:`~pyxos.kv.keys`, :mod:`~pyxos.kv.transactions`, :mod:`~pyxos.kv.scripting`); each
``c_<name>`` method answers one command. This class routes, keeps sessions, and snapshots.

Snapshots of a big store are taken and installed off the event loop
(:class:`~pyxos.core.statemachine.ConcurrentSnapshots`): :meth:`KVStateMachine.snapshot_stream`
copies the dicts (C-level copies, milliseconds) and encodes frames lazily, in whatever thread
iterates it; :meth:`KVStateMachine.prepare_restore` decodes in a worker thread and returns
the swap.

Replies: ``apply`` returns RESP2 bytes, which the server writes to the client unchanged and
which is what the exactly-once cache stores. RESP3 clients get
:func:`pyxos.resp.replies.to_resp3` of the same bytes (for these commands only null differs).
``read`` can encode for either protocol directly since it does not go through the cache.

Exactly-once (docs/DESIGN.md section 3, rule 4): a request with ``client_id != 0`` is executed at
most once. Each client has a session holding the last sequence number executed and its
reply; a retry of that number gets the cached reply, an older number gets an error. Sessions
expire by *log position*, never by wall clock (replicas' clocks disagree): a session unused
for more than ``session_timeout`` applied entries is dropped, and beyond ``max_sessions`` the
least recently used one is. ``session_timeout`` and ``max_sessions`` must be equal on all
replicas (they shape the replicated state), like the rest of the cluster configuration.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import msgspec

from pyxos.kv.acl import AclCommands, AclTable
from pyxos.kv.bits import BitCommands
from pyxos.kv.blocking_pops import BlockingPops
from pyxos.kv.commands import COMMANDS, CommandKind, CommandSpec, check
from pyxos.kv.errors import (
    ERR_EMPTY,
    ERR_INTERNAL,
    ERR_INVALID_SEQ,
    ERR_MALFORMED,
    ERR_NOT_INTEGER,
    ERR_OVERFLOW,
    ERR_STALE,
    ERR_SYNTAX,
    ERR_TOO_BIG,
)
from pyxos.kv.expiry import ExpiryCommands
from pyxos.kv.hashes import HashCommands
from pyxos.kv.keys import KeyCommands
from pyxos.kv.keyspace import NUM_DBS, Db, Watch
from pyxos.kv.lists import ListCommands
from pyxos.kv.reads import LocalReads
from pyxos.kv.request import Request, decode_request
from pyxos.kv.scripting import DEFAULT_MAX_INSTRUCTIONS, DEFAULT_SCRIPT_MEMORY, ScriptCommands
from pyxos.kv.sets import SetCommands
from pyxos.kv.snapshot import (
    FRAME_KEYS,
    SessionRecord,
    State,
    WatchRecord,
    decode_state,
    digest_state,
    encode_state,
)
from pyxos.kv.strings import StringCommands
from pyxos.kv.transactions import TransactionCommands
from pyxos.kv.values import NULL_ARRAY, WRONGTYPE, WrongTypeError, snapshot_copy
from pyxos.kv.zsets import ZSetCommands
from pyxos.resp.replies import OK, ErrorReply, Reply, encode_resp2
from pyxos.session_table import DEFAULT_IDLE_LIMIT, DEFAULT_MAX_SESSIONS, SessionTable

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_VALUE_LEN",
    "DEFAULT_SESSION_TIMEOUT",
    "ERR_INTERNAL",
    "ERR_INVALID_SEQ",
    "ERR_MALFORMED",
    "ERR_NOT_INTEGER",
    "ERR_OVERFLOW",
    "ERR_STALE",
    "ERR_SYNTAX",
    "ERR_TOO_BIG",
    "FRAME_KEYS",
    "KVStateMachine",
]

DEFAULT_SESSION_TIMEOUT = DEFAULT_IDLE_LIMIT
"""Applied log entries after which an unused client session is dropped."""
DEFAULT_MAX_VALUE_LEN = 512 * 1024 * 1024
"""Largest value a command may build (Redis ``proto-max-bulk-len``)."""

_MALFORMED_RESP2 = encode_resp2(ERR_MALFORMED)
_EMPTY_RESP2 = encode_resp2(ERR_EMPTY)
_OK_RESP2 = encode_resp2(OK)
_INTERNAL_RESP2 = encode_resp2(ERR_INTERNAL)
_WRONGTYPE_RESP2 = encode_resp2(WRONGTYPE)
_NULL_ARRAY_RESP2 = b"*-1\r\n"


_Handler = Callable[[Sequence[bytes]], Reply]


class KVStateMachine(
    LocalReads,
    StringCommands,
    BitCommands,
    ExpiryCommands,
    KeyCommands,
    TransactionCommands,
    ScriptCommands,
    HashCommands,
    SetCommands,
    ZSetCommands,
    ListCommands,
    BlockingPops,
    AclCommands,
):
    """A Redis-compatible string key-value store with exactly-once client sessions.

    Implements the :class:`~pyxos.core.statemachine.StateMachine` protocol: ``apply`` takes
    a log entry made by :func:`pyxos.kv.request.encode_request` and returns the RESP2 reply.
    ``apply`` never raises, whatever the bytes: a log may hold a malformed entry, and every
    replica must answer it identically rather than crash on it.
    """

    def __init__(
        self,
        *,
        session_timeout: int = DEFAULT_SESSION_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_value_len: int = DEFAULT_MAX_VALUE_LEN,
        max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
        script_memory: int = DEFAULT_SCRIPT_MEMORY,
        acl: AclTable | None = None,
    ) -> None:
        if session_timeout < 1 or max_sessions < 1 or max_value_len < 0:
            raise ValueError("session_timeout and max_sessions must be positive")
        if max_instructions < 1000 or script_memory < 1 << 20:
            raise ValueError("max_instructions must be at least 1000, script_memory 1 MiB")
        super().__init__()
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self.max_value_len = max_value_len
        self.max_instructions = max_instructions
        self.script_memory = script_memory
        self.scripts = OrderedDict()
        self._sessions = SessionTable(
            stale_reply=encode_resp2(ERR_STALE),
            invalid_reply=encode_resp2(ERR_INVALID_SEQ),
            max_sessions=max_sessions,
            idle_limit=session_timeout,
        )
        self._applied = 0
        self._dispatch: dict[bytes, tuple[CommandSpec, _Handler]] = {
            name: (spec, getattr(self, "c_" + spec.name))
            for name, spec in COMMANDS.items()
            if spec.kind in (CommandKind.WRITE, CommandKind.READ)
        }
        self.acl = acl if acl is not None else AclTable()
        self._dispatch[b"acl"] = (COMMANDS[b"acl"], self.c_acl)  # SETUSER, DELUSER

    # --- StateMachine protocol ----------------------------------------------------------

    def apply(self, command: bytes) -> bytes:
        """Apply one log entry (an encoded :class:`Request`) and return its RESP2 reply."""
        try:
            request = decode_request(command)
        except msgspec.DecodeError:
            self._applied += 1
            self._sessions.expire(self._applied)
            return _MALFORMED_RESP2
        return self.apply_request(request)

    def apply_request(self, request: Request) -> bytes:
        """Apply an already decoded request (what :meth:`apply` does after decoding)."""
        self._applied += 1
        self.random_draws = 0
        self._sessions.expire(self._applied)
        if self.watchers:
            self.expire_watchers()
        if request.time > self.now:
            self.advance(request.time)
        if request.db != self.db_index:
            if not 0 <= request.db < NUM_DBS:
                return _MALFORMED_RESP2
            self.select(request.db)
        client_id = request.client_id
        if client_id == 0:
            if request.watch or request.multi is not None:
                return self.transaction(request)
            argv = request.argv
            if argv:
                return self._execute(argv)
            return _OK_RESP2 if request.time else _EMPTY_RESP2
        seq = request.seq
        cached = self._sessions.cached(client_id, seq, self._applied)
        if cached is not None:
            return cached
        reply = self._run(request)
        self._sessions.record(client_id, seq, reply, self._applied)
        return reply

    def _run(self, request: Request) -> bytes:
        argv = request.argv
        if request.watch or request.multi is not None:
            return self.transaction(request)
        if not argv:
            # A clock tick (a time stamp and no command) only advances the clock, which
            # already happened; anything else empty is an error.
            return _OK_RESP2 if request.time else _EMPTY_RESP2
        return self._execute(argv)

    # --- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (:meth:`snapshot_stream` joined)."""
        return b"".join(self.snapshot_stream())

    def snapshot_stream(self) -> Iterator[bytes]:
        """Capture the state now; the returned iterator encodes it lazily, in any thread.

        The capture copies the dicts and records, so commands applied after this call do
        not show in the snapshot. Values are immutable ``bytes`` and are shared, not copied.
        """
        return encode_state(self._capture())

    def _capture(self) -> State:
        return State(
            applied=self._applied,
            now=self.now,
            data=[
                {k: snapshot_copy(v) for k, v in db.data.items()}
                if db.containers
                else db.data.copy()
                for db in self.dbs
            ],
            expires=[db.expires.copy() for db in self.dbs],
            sessions=[
                SessionRecord(cid, s.seq, s.last_used, s.reply) for cid, s in self._sessions.items()
            ],
            watchers=[
                WatchRecord(wid, w.since, w.dirty, list(w.keys)) for wid, w in self.watchers.items()
            ],
            scripts=self.script_records(),
            users=self.acl.records(),
        )

    def restore(self, data: bytes) -> None:
        """Replace the whole state with one from :meth:`snapshot`.

        Raises:
            ValueError: ``data`` is not a snapshot of a supported version. The current state
                is left untouched in that case.
        """
        self.prepare_restore(data)()

    def prepare_restore(self, data: bytes) -> Callable[[], None]:
        """Decode ``data`` without touching the live state; return the function that swaps
        it in. The decoding may run in a worker thread; the swap must run where commands
        are applied.

        Raises:
            ValueError: ``data`` is not a snapshot of a supported version.
        """
        state = decode_state(data)
        return lambda: self._swap(state)

    def _swap(self, state: State) -> None:
        dbs = [Db() for _ in range(NUM_DBS)]
        for index, db in enumerate(dbs):
            db.data = state.data[index]
            db.expires = state.expires[index]
            db.containers = any(type(v) is not bytes for v in db.data.values())
        watchers: OrderedDict[int, Watch] = OrderedDict()
        for rec in state.watchers:
            watch = watchers[rec.wid] = Watch(rec.since)
            watch.dirty = rec.dirty
            watch.keys = list(rec.keys)
            for index, key in rec.keys:
                dbs[index].watched.setdefault(key, []).append(rec.wid)
        self.dbs = dbs
        self.select(self.db_index)
        self.watchers = watchers
        self._sessions.load((s.client_id, s.seq, s.reply, s.last_used) for s in state.sessions)
        self._applied = state.applied
        self.now = self.clock = state.now
        self._rebuild_heap()
        self.load_scripts(state.scripts)
        if self.on_ready is not None:
            self.on_ready(-1, b"")
        self.acl.load(state.users)

    def digest(self) -> str:
        """SHA-256 of the state in a canonical form (keys sorted), hex: equal on replicas
        that have converged, whatever order their keys were inserted in."""
        return digest_state(self._capture())

    @property
    def applied(self) -> int:
        """Log entries applied so far (including malformed ones): the session clock."""
        return self._applied

    @property
    def session_count(self) -> int:
        """Client sessions currently remembered."""
        return len(self._sessions)

    def __len__(self) -> int:
        """Number of keys in database 0 (DBSIZE)."""
        return len(self.dbs[0].data)

    # --- internals ---------------------------------------------------------------------------

    def _checked(self, argv: Sequence[bytes]) -> tuple[CommandSpec, _Handler] | ErrorReply:
        """The slow path of routing: containers, arity errors, unknown and connection
        commands, with the same errors as :func:`pyxos.kv.commands.classify`."""
        spec = check(argv)
        if isinstance(spec, ErrorReply):
            return spec
        entry = self._dispatch.get(spec.name.split("|")[0].encode())
        if entry is None:
            return ErrorReply(
                f"ERR '{spec.name}' is a connection command and cannot be applied to the"
                " replicated state"
            )
        return spec, entry[1]

    def _execute(self, argv: Sequence[bytes]) -> bytes:
        """Run one command of a log entry; RESP2 reply bytes. The common case (a command
        with valid arity, not a container) is dispatched here without further calls."""
        entry = self._dispatch.get(argv[0])
        if entry is None:
            entry = self._dispatch.get(argv[0].lower())
        if entry is not None:
            spec, handler = entry
            argc = len(argv)
            if (
                not spec.subcommands
                and (argc == spec.arity if spec.arity > 0 else argc >= -spec.arity)
                and not (spec.step == 2 and argc % 2 == 0)
            ):
                try:
                    reply = handler(argv)
                    return _NULL_ARRAY_RESP2 if reply is NULL_ARRAY else encode_resp2(reply)
                except WrongTypeError:
                    return _WRONGTYPE_RESP2
                except Exception:
                    return _INTERNAL_RESP2
        reply = self._value(argv)
        return _NULL_ARRAY_RESP2 if reply is NULL_ARRAY else encode_resp2(reply)

    def execute_value(self, argv: Sequence[bytes]) -> Reply:
        """Run one command (write or read) on the current database; its reply value (a
        null array is None, as a script sees it)."""
        reply = self._value(argv)
        return None if reply is NULL_ARRAY else reply

    def _value(self, argv: Sequence[bytes]) -> Reply:
        if not argv:
            return ERR_EMPTY
        entry = self._dispatch.get(argv[0])
        if entry is None:
            entry = self._dispatch.get(argv[0].lower())
        if entry is not None:
            spec, handler = entry
            argc = len(argv)
            if (
                spec.subcommands
                or not (argc == spec.arity if spec.arity > 0 else argc >= -spec.arity)
                or (spec.step == 2 and argc % 2 == 0)
            ):
                checked = self._checked(argv)
                if isinstance(checked, ErrorReply):
                    return checked
        else:
            checked = self._checked(argv)
            if isinstance(checked, ErrorReply):
                return checked
            handler = checked[1]
        try:
            return handler(argv)
        except WrongTypeError:
            return WRONGTYPE
        except Exception:
            # Only a bug gets here. Crashing would crash every replica on the same entry,
            # and again after each restart; an error reply is deterministic and survivable.
            return ERR_INTERNAL
