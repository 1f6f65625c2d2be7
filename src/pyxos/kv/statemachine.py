"""The replicated key-value store: a deterministic :class:`~pyxos.core.statemachine.StateMachine`.

Every replica applies the same log entries in the same order and must end in the same state
with the same replies, so nothing here reads a clock, draws a random number, or iterates a
``set``. Python dicts iterate in insertion order, which is itself a function of the applied
history, so iterating them is deterministic. No reply depends on that order, so snapshots
keep it (sorting a million keys would hold the interpreter for half a second); the state
digest, which must be equal on every converged replica whatever its history, sorts.

Snapshots of a big store are taken and installed off the event loop
(:class:`~pyxos.core.statemachine.ConcurrentSnapshots`): :meth:`KVStateMachine.snapshot_stream`
copies the dict (one C-level copy, milliseconds) and encodes frames of a few thousand keys
lazily, in whatever thread iterates it; :meth:`KVStateMachine.prepare_restore` decodes frame
by frame into a new dict in a worker thread and returns the swap. Work in small C calls
lets the event loop keep the interpreter lock in between, so heartbeats keep flowing.

Replies: ``apply`` returns RESP2 bytes, which the server writes to the client unchanged and
which is what the exactly-once cache stores. RESP3 clients get
:func:`pyxos.kv.reply.to_resp3` of the same bytes (for this command set only null differs).
``read`` can encode for either protocol directly since it does not go through the cache.

Exactly-once (DESIGN.md section 3, rule 4): a request with ``client_id != 0`` is executed at
most once. Each client has a session holding the last sequence number executed and its
reply; a retry of that number gets the cached reply, an older number gets an error. Sessions
expire by *log position*, never by wall clock (replicas' clocks disagree): a session unused
for more than ``session_timeout`` applied entries is dropped, and beyond ``max_sessions`` the
least recently used one is. Sessions are kept in an ``OrderedDict`` in use order, so both rules
only ever look at its front, and the order is part of the snapshot.

A client must therefore not retry a request after more than ``session_timeout`` entries have
been applied since it last used its session: its session may be gone and the retry would
execute again. With the default of a million entries that is far beyond any sane retry loop.
``session_timeout`` and ``max_sessions`` must be equal on all replicas (they shape the
replicated state), like the rest of the cluster configuration.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import msgspec

from pyxos.kv.commands import (
    COMMANDS,
    LLONG_MAX,
    LLONG_MIN,
    CommandKind,
    CommandSpec,
    arity_error,
    string2ll,
    unknown_command_error,
)
from pyxos.kv.reply import (
    OK,
    ErrorReply,
    Reply,
    SimpleString,
    encode,
    encode_resp2,
)
from pyxos.kv.request import Request, decode_request

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "DEFAULT_MAX_VALUE_LEN",
    "DEFAULT_SESSION_TIMEOUT",
    "ERR_EXPIRY_UNSUPPORTED",
    "ERR_INTERNAL",
    "ERR_INVALID_SEQ",
    "ERR_MALFORMED",
    "ERR_NOT_INTEGER",
    "ERR_OVERFLOW",
    "ERR_STALE",
    "ERR_SYNTAX",
    "KVStateMachine",
]

DEFAULT_SESSION_TIMEOUT = 1_000_000
"""Applied log entries after which an unused client session is dropped."""
DEFAULT_MAX_SESSIONS = 100_000
"""Most client sessions kept; the least recently used is dropped beyond this."""
DEFAULT_MAX_VALUE_LEN = 512 * 1024 * 1024
"""Largest value APPEND may build (Redis ``proto-max-bulk-len``)."""

SNAPSHOT_VERSION = 2
SNAPSHOT_MAGIC = b"PXKV"
"""Version 2 snapshots start with these bytes and the version; version 1 (a single msgpack
``_Snapshot`` with sorted keys) is still accepted by :meth:`KVStateMachine.restore`."""
FRAME_KEYS = 4096
"""Keys per snapshot frame: small enough that encoding or decoding one takes about a
millisecond, so a worker thread hands the interpreter back to the event loop often."""

# Replies, exactly as Redis words them where Redis has the case.
ERR_SYNTAX = ErrorReply("ERR syntax error")
ERR_NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
ERR_OVERFLOW = ErrorReply("ERR increment or decrement would overflow")
ERR_DECR_OVERFLOW = ErrorReply("ERR decrement would overflow")
ERR_TOO_BIG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
ERR_EXPIRY_UNSUPPORTED = ErrorReply(
    "ERR key expiry (EX, PX, EXAT, PXAT) is not supported: pyxos replicates a deterministic"
    " state machine, which has no clock"
)
ERR_MALFORMED = ErrorReply("ERR malformed replicated request")
ERR_EMPTY = ErrorReply("ERR empty command")
ERR_STALE = ErrorReply("ERR stale request sequence")
ERR_INVALID_SEQ = ErrorReply("ERR invalid request sequence: must be positive with a client id")
ERR_INTERNAL = ErrorReply("ERR internal error while applying the command")

_STRING = SimpleString("string")
_NONE = SimpleString("none")
_SYNC_FLAGS = (b"sync", b"async")
_EXPIRY_OPTIONS = (b"ex", b"px", b"exat", b"pxat")

_MALFORMED_RESP2 = encode_resp2(ERR_MALFORMED)


class _Session:
    """The exactly-once record of one client: last sequence executed, its reply, and the
    log position of its last use (for expiry)."""

    __slots__ = ("last_used", "reply", "seq")

    def __init__(self, seq: int, reply: bytes, last_used: int) -> None:
        self.seq = seq
        self.reply = reply
        self.last_used = last_used


class _SessionRecord(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    client_id: int
    seq: int
    last_used: int
    reply: bytes


class _Snapshot(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    version: int
    applied: int
    keys: list[bytes]  # sorted
    values: list[bytes]
    sessions: list[_SessionRecord]  # least recently used first


class _Header(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    applied: int
    keys: int
    sessions: list[_SessionRecord]  # least recently used first


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_Snapshot)
_header_decoder = msgspec.msgpack.Decoder(_Header)
_frame_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])
_FRAME_LEN = struct.Struct(">I")


def _frame(payload: bytes) -> bytes:
    return _FRAME_LEN.pack(len(payload)) + payload


def _frames(data: bytes, start: int) -> Iterator[memoryview]:
    """The length-prefixed frames of ``data`` from ``start``; ValueError if truncated."""
    view = memoryview(data)
    pos, end = start, len(data)
    while pos < end:
        if pos + 4 > end:
            raise ValueError("corrupt KV snapshot: truncated frame header")
        (n,) = _FRAME_LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > end:
            raise ValueError("corrupt KV snapshot: truncated frame")
        yield view[pos : pos + n]
        pos += n


_Handler = Callable[[Sequence[bytes]], Reply]


class KVStateMachine:
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
    ) -> None:
        if session_timeout < 1 or max_sessions < 1 or max_value_len < 0:
            raise ValueError("session_timeout and max_sessions must be positive")
        self.session_timeout = session_timeout
        self.max_sessions = max_sessions
        self.max_value_len = max_value_len
        self._data: dict[bytes, bytes] = {}
        self._sessions: OrderedDict[int, _Session] = OrderedDict()
        self._applied = 0
        handlers: dict[str, _Handler] = {
            "get": self._get,
            "set": self._set,
            "setnx": self._setnx,
            "getset": self._getset,
            "getdel": self._getdel,
            "del": self._del,
            "unlink": self._del,
            "incr": self._incr,
            "incrby": self._incrby,
            "decr": self._decr,
            "decrby": self._decrby,
            "mset": self._mset,
            "msetnx": self._msetnx,
            "append": self._append,
            "cas": self._cas,
            "flushdb": self._flush,
            "flushall": self._flush,
            "mget": self._mget,
            "exists": self._exists,
            "strlen": self._strlen,
            "dbsize": self._dbsize,
            "type": self._type,
            "ttl": self._ttl,
            "pttl": self._ttl,
        }
        self._dispatch: dict[bytes, tuple[CommandSpec, _Handler]] = {
            name: (spec, handlers[spec.name])
            for name, spec in COMMANDS.items()
            if spec.kind in (CommandKind.WRITE, CommandKind.READ)
        }

    # --- StateMachine protocol ----------------------------------------------------------

    def apply(self, command: bytes) -> bytes:
        """Apply one log entry (an encoded :class:`Request`) and return its RESP2 reply."""
        try:
            request = decode_request(command)
        except msgspec.DecodeError:
            self._applied += 1
            self._expire_sessions()
            return _MALFORMED_RESP2
        return self.apply_request(request)

    def snapshot(self) -> bytes:
        """The whole state as bytes (:meth:`snapshot_stream` joined)."""
        return b"".join(self.snapshot_stream())

    def snapshot_stream(self) -> Iterator[bytes]:
        """Capture the state now; the returned iterator encodes it lazily, in any thread.

        The capture is a shallow copy of the key dict and of each session's fields, so
        commands applied after this call do not show in the snapshot. Values are immutable
        ``bytes`` and are shared, not copied.
        """
        data = self._data.copy()
        header = _Header(self._applied, len(data), self._session_records())

        def frames() -> Iterator[bytes]:
            yield SNAPSHOT_MAGIC + bytes([SNAPSHOT_VERSION])
            yield _frame(_snapshot_encoder.encode(header))
            items = iter(data.items())
            while chunk := list(itertools.islice(items, FRAME_KEYS)):
                yield _frame(_snapshot_encoder.encode(chunk))

        return frames()

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
        if not data.startswith(SNAPSHOT_MAGIC):
            return self._prepare_restore_v1(data)
        if len(data) < 5 or data[4] != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported KV snapshot version {data[4:5]!r}")
        frames = _frames(data, 5)
        try:
            header = _header_decoder.decode(next(frames))
            new: dict[bytes, bytes] = {}
            total = 0
            for frame in frames:
                chunk = _frame_decoder.decode(frame)
                total += len(chunk)
                new.update(chunk)
        except StopIteration:
            raise ValueError("corrupt KV snapshot: no header") from None
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a KV snapshot: {exc}") from exc
        if total != header.keys or len(new) != total:
            raise ValueError(
                f"corrupt KV snapshot: {total} entries, {len(new)} distinct keys, "
                f"where the header says {header.keys}"
            )
        sessions = self._sessions_of(header.sessions)
        return lambda: self._swap(new, sessions, header.applied)

    def _prepare_restore_v1(self, data: bytes) -> Callable[[], None]:
        try:
            snap = _snapshot_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a KV snapshot: {exc}") from exc
        if snap.version != 1:
            raise ValueError(f"unsupported KV snapshot version {snap.version}")
        if len(snap.keys) != len(snap.values):
            raise ValueError("corrupt KV snapshot: key and value counts differ")
        new = dict(zip(snap.keys, snap.values, strict=True))
        sessions = self._sessions_of(snap.sessions)
        return lambda: self._swap(new, sessions, snap.applied)

    def _session_records(self) -> list[_SessionRecord]:
        """The sessions as snapshot records, least recently used first (a copy: the live
        ``_Session`` objects change in place)."""
        return [
            _SessionRecord(cid, s.seq, s.last_used, s.reply) for cid, s in self._sessions.items()
        ]

    @staticmethod
    def _sessions_of(records: list[_SessionRecord]) -> OrderedDict[int, _Session]:
        sessions: OrderedDict[int, _Session] = OrderedDict()
        for rec in records:
            sessions[rec.client_id] = _Session(rec.seq, rec.reply, rec.last_used)
        return sessions

    def _swap(
        self, data: dict[bytes, bytes], sessions: OrderedDict[int, _Session], applied: int
    ) -> None:
        self._data = data
        self._sessions = sessions
        self._applied = applied

    # --- the rest of the public API --------------------------------------------------------

    def apply_request(self, request: Request) -> bytes:
        """Apply an already decoded request (what :meth:`apply` does after decoding)."""
        self._applied += 1
        self._expire_sessions()
        client_id = request.client_id
        if client_id == 0:
            return self._execute(request.argv)
        seq = request.seq
        sessions = self._sessions
        session = sessions.get(client_id)
        if session is not None:
            if seq <= session.seq:
                session.last_used = self._applied
                sessions.move_to_end(client_id)
                return session.reply if seq == session.seq else encode_resp2(ERR_STALE)
        elif seq <= 0:
            return encode_resp2(ERR_INVALID_SEQ)
        reply = self._execute(request.argv)
        if session is None:
            sessions[client_id] = _Session(seq, reply, self._applied)
            if len(sessions) > self.max_sessions:
                sessions.popitem(last=False)
        else:
            session.seq = seq
            session.reply = reply
            session.last_used = self._applied
            sessions.move_to_end(client_id)
        return reply

    def read(self, argv: Sequence[bytes], protocol: int = 2) -> bytes:
        """Answer a READ command from the current state, without changing anything.

        For linearizable reads the caller must first make sure this replica has applied
        everything up to the read index. A write or connection command gets an error reply.
        """
        return encode(self.read_value(argv), protocol)

    def read_value(self, argv: Sequence[bytes]) -> Reply:
        """:meth:`read`, returning the reply value instead of encoded bytes."""
        if not argv:
            return ERR_EMPTY
        entry = self._dispatch.get(argv[0].lower())
        if entry is None or entry[0].kind is not CommandKind.READ:
            checked = self._check(argv)
            if isinstance(checked, ErrorReply):
                return checked
            return ErrorReply(
                f"ERR '{checked[0].name}' changes the replicated state and must go through the log"
            )
        spec, handler = entry
        if not spec.arity_ok(len(argv)):
            return arity_error(spec.name)
        return handler(argv)

    def digest(self) -> str:
        """SHA-256 of the state in a canonical form (keys sorted), hex: equal on replicas
        that have converged, whatever order their keys were inserted in."""
        keys = sorted(self._data)
        data = self._data
        canonical = _Snapshot(
            version=1,
            applied=self._applied,
            keys=keys,
            values=[data[k] for k in keys],
            sessions=self._session_records(),
        )
        return hashlib.sha256(_snapshot_encoder.encode(canonical)).hexdigest()

    @property
    def applied(self) -> int:
        """Log entries applied so far (including malformed ones): the session clock."""
        return self._applied

    @property
    def session_count(self) -> int:
        """Client sessions currently remembered."""
        return len(self._sessions)

    def __len__(self) -> int:
        """Number of keys (DBSIZE)."""
        return len(self._data)

    # --- internals ---------------------------------------------------------------------------

    def _expire_sessions(self) -> None:
        # Sessions are ordered by last use, so the expired ones are all at the front.
        sessions = self._sessions
        if not sessions:
            return
        horizon = self._applied - self.session_timeout
        while sessions:
            oldest = next(iter(sessions.values()))
            if oldest.last_used >= horizon:
                break
            sessions.popitem(last=False)

    def _check(self, argv: Sequence[bytes]) -> tuple[CommandSpec, _Handler] | ErrorReply:
        entry = self._dispatch.get(argv[0].lower())
        if entry is None:
            spec = COMMANDS.get(argv[0].lower())
            if spec is None:
                return unknown_command_error(argv)
            return ErrorReply(
                f"ERR '{spec.name}' is a connection command and cannot be applied to the"
                " replicated state"
            )
        spec = entry[0]
        if not spec.arity_ok(len(argv)) or (spec.step == 2 and len(argv) % 2 == 0):
            return arity_error(spec.name)
        return entry

    def _execute(self, argv: Sequence[bytes]) -> bytes:
        if not argv:
            return encode_resp2(ERR_EMPTY)
        checked = self._check(argv)
        if isinstance(checked, ErrorReply):
            return encode_resp2(checked)
        try:
            return encode_resp2(checked[1](argv))
        except Exception:
            # Only a bug gets here. Crashing would crash every replica on the same entry,
            # and again after each restart; an error reply is deterministic and survivable.
            return encode_resp2(ERR_INTERNAL)

    # --- command implementations (argv has valid arity) --------------------------------

    def _get(self, argv: Sequence[bytes]) -> Reply:
        return self._data.get(argv[1])

    def _set(self, argv: Sequence[bytes]) -> Reply:
        # Option parsing mirrors Redis's parseExtendedStringArgumentsOrReply, so the same
        # option lists are syntax errors (NX with XX, KEEPTTL with EX...).
        nx = xx = get = keepttl = False
        expiry: bytes | None = None
        argc = len(argv)
        j = 3
        while j < argc:
            opt = argv[j].lower()
            has_next = j + 1 < argc
            if opt == b"nx" and not xx:
                nx = True
            elif opt == b"xx" and not nx:
                xx = True
            elif opt == b"get":
                get = True
            elif opt == b"keepttl" and expiry is None:
                keepttl = True  # trivially honoured: no key ever has a TTL
            elif (
                opt in _EXPIRY_OPTIONS
                and not keepttl
                and (expiry is None or expiry == opt)
                and has_next
            ):
                expiry = opt
                j += 1
            else:
                return ERR_SYNTAX
            j += 1
        if expiry is not None:
            return ERR_EXPIRY_UNSUPPORTED
        data = self._data
        key = argv[1]
        old = data.get(key)
        if (nx and old is not None) or (xx and old is None):
            return old if get else None
        data[key] = argv[2]
        return old if get else OK

    def _setnx(self, argv: Sequence[bytes]) -> Reply:
        if argv[1] in self._data:
            return 0
        self._data[argv[1]] = argv[2]
        return 1

    def _getset(self, argv: Sequence[bytes]) -> Reply:
        old = self._data.get(argv[1])
        self._data[argv[1]] = argv[2]
        return old

    def _getdel(self, argv: Sequence[bytes]) -> Reply:
        return self._data.pop(argv[1], None)

    def _del(self, argv: Sequence[bytes]) -> Reply:
        pop = self._data.pop
        return sum(1 for key in argv[1:] if pop(key, None) is not None)

    def _incr_by(self, key: bytes, incr: int) -> Reply:
        old = self._data.get(key)
        if old is None:
            value = 0
        else:
            parsed = string2ll(old)
            if parsed is None:
                return ERR_NOT_INTEGER
            value = parsed
        if (incr < 0 and value < 0 and incr < LLONG_MIN - value) or (
            incr > 0 and value > 0 and incr > LLONG_MAX - value
        ):
            return ERR_OVERFLOW
        value += incr
        self._data[key] = b"%d" % value
        return value

    def _incr(self, argv: Sequence[bytes]) -> Reply:
        return self._incr_by(argv[1], 1)

    def _decr(self, argv: Sequence[bytes]) -> Reply:
        return self._incr_by(argv[1], -1)

    def _incrby(self, argv: Sequence[bytes]) -> Reply:
        incr = string2ll(argv[2])
        if incr is None:
            return ERR_NOT_INTEGER
        return self._incr_by(argv[1], incr)

    def _decrby(self, argv: Sequence[bytes]) -> Reply:
        incr = string2ll(argv[2])
        if incr is None:
            return ERR_NOT_INTEGER
        if incr == LLONG_MIN:
            return ERR_DECR_OVERFLOW
        return self._incr_by(argv[1], -incr)

    def _mset(self, argv: Sequence[bytes]) -> Reply:
        data = self._data
        for i in range(1, len(argv), 2):
            data[argv[i]] = argv[i + 1]
        return OK

    def _msetnx(self, argv: Sequence[bytes]) -> Reply:
        data = self._data
        if any(argv[i] in data for i in range(1, len(argv), 2)):
            return 0
        for i in range(1, len(argv), 2):
            data[argv[i]] = argv[i + 1]
        return 1

    def _append(self, argv: Sequence[bytes]) -> Reply:
        old = self._data.get(argv[1], b"")
        if len(old) + len(argv[2]) > self.max_value_len:
            return ERR_TOO_BIG
        new = old + argv[2]
        self._data[argv[1]] = new
        return len(new)

    def _cas(self, argv: Sequence[bytes]) -> Reply:
        # A missing key never matches, even an empty expected value: CAS only replaces.
        key = argv[1]
        current = self._data.get(key)
        if current is None or current != argv[2]:
            return 0
        self._data[key] = argv[3]
        return 1

    def _flush(self, argv: Sequence[bytes]) -> Reply:
        # Redis's getFlushCommandFlags: nothing, SYNC or ASYNC. Sessions survive: they
        # protect clients, not data.
        if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() not in _SYNC_FLAGS):
            return ERR_SYNTAX
        self._data = {}
        return OK

    def _mget(self, argv: Sequence[bytes]) -> Reply:
        get = self._data.get
        return [get(key) for key in argv[1:]]

    def _exists(self, argv: Sequence[bytes]) -> Reply:
        data = self._data
        return sum(1 for key in argv[1:] if key in data)

    def _strlen(self, argv: Sequence[bytes]) -> Reply:
        return len(self._data.get(argv[1], b""))

    def _dbsize(self, argv: Sequence[bytes]) -> Reply:
        return len(self._data)

    def _type(self, argv: Sequence[bytes]) -> Reply:
        return _STRING if argv[1] in self._data else _NONE

    def _ttl(self, argv: Sequence[bytes]) -> Reply:
        # No key ever has a TTL: -1 for an existing key, -2 for a missing one, as Redis.
        return -1 if argv[1] in self._data else -2
