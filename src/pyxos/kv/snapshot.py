"""The KV state as snapshot bytes, and back; and the canonical digest.

Version 4 (current) is ``PXKV`` + ``\\x04`` and then length-prefixed msgpack frames: a header
(applied index, the replicated clock, client sessions, WATCH registrations, the script cache,
per-database key counts and, last, the ACL users, absent from older headers), then frames of
a few thousand keys, ``(db, [(key, value)...])`` for values and ``(db + 16, [(key, expiry
ms)...])`` for TTLs. A string's value is its bytes;
a container's is its type code (:data:`KIND_CODES`), holding the key's place in the order,
and its elements follow in ``(db + 32, [(key, [element...])...])`` frames of at most
:data:`FRAME_ELEMENTS` elements each, a big container spread over as many frames as it
needs (a hash's elements are field, value, field, value...; a sorted set's member, score...).
Small frames let a worker thread encode or decode a big state, even one huge key, while the
event loop keeps the interpreter often. Versions 3 (strings only), 2 (one database, no TTLs)
and 1 (one msgpack document) are still restored, so a data directory written before expiry
existed still starts.

Dict order is part of the state (KEYS lists keys in it), so frames keep it; the digest, which
must be equal on converged replicas whatever their history, sorts instead.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from pyxos.kv.keyspace import NUM_DBS
from pyxos.kv.values import Hash, ListValue, SetValue, Value, ZSet

__all__ = [
    "FRAME_KEYS",
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_VERSION",
    "SessionRecord",
    "State",
    "WatchRecord",
    "decode_state",
    "digest_state",
    "encode_state",
]

SNAPSHOT_VERSION = 4
SNAPSHOT_MAGIC = b"PXKV"
FRAME_KEYS = 4096
"""Keys per snapshot frame: small enough that encoding or decoding one takes about a
millisecond, so a worker thread hands the interpreter back to the event loop often."""
FRAME_ELEMENTS = 16384
"""Container elements per snapshot frame."""
KIND_CODES: dict[type, int] = {Hash: 1, SetValue: 2, ListValue: 3, ZSet: 4}
"""The type code a container's place in a data frame holds."""
_KINDS: dict[int, type] = {code: kind for kind, code in KIND_CODES.items()}


class SessionRecord(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    client_id: int
    seq: int
    last_used: int
    reply: bytes


class WatchRecord(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    wid: int
    since: int
    dirty: bool
    keys: list[tuple[int, bytes]]


class _Header(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    applied: int
    now: int
    sessions: list[SessionRecord]  # least recently used first
    watchers: list[WatchRecord]  # oldest first
    scripts: list[tuple[bytes, bytes]]  # (sha1 hex, body), in load order
    keys: list[int]  # per database
    expires: list[int]  # per database
    users: list[tuple[bytes, bytes | None]] = []  # ACL changes (see pyxos.kv.acl)


class _HeaderV2(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    applied: int
    keys: int
    sessions: list[SessionRecord]


class _SnapshotV1(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    version: int
    applied: int
    keys: list[bytes]
    values: list[bytes]
    sessions: list[SessionRecord]


@dataclass
class State:
    """Everything a snapshot holds, as plain containers."""

    applied: int = 0
    now: int = 0
    data: list[dict[bytes, Value]] = field(default_factory=lambda: [{} for _ in range(NUM_DBS)])
    expires: list[dict[bytes, int]] = field(default_factory=lambda: [{} for _ in range(NUM_DBS)])
    sessions: list[SessionRecord] = field(default_factory=list)
    watchers: list[WatchRecord] = field(default_factory=list)
    scripts: list[tuple[bytes, bytes]] = field(default_factory=list)
    users: list[tuple[bytes, bytes | None]] = field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_Header)
_header_v2_decoder = msgspec.msgpack.Decoder(_HeaderV2)
_v1_decoder = msgspec.msgpack.Decoder(_SnapshotV1)
_frame_decoder = msgspec.msgpack.Decoder(
    tuple[int, list[tuple[bytes, bytes | int | list[bytes | float]]]]
)
_frame_v2_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])
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


def encode_state(state: State) -> Iterator[bytes]:
    """The snapshot of ``state``, lazily, frame by frame (the containers must not change
    while it is iterated: pass copies)."""
    header = _Header(
        state.applied,
        state.now,
        state.sessions,
        state.watchers,
        state.scripts,
        [len(d) for d in state.data],
        [len(e) for e in state.expires],
        state.users,
    )
    yield SNAPSHOT_MAGIC + bytes([SNAPSHOT_VERSION])
    yield _frame(_encoder.encode(header))
    for index in range(NUM_DBS):
        data = state.data[index]
        items = iter(data.items())
        while chunk := list(itertools.islice(items, FRAME_KEYS)):
            yield _frame(_encoder.encode((index, [_placeholder(k, v) for k, v in chunk])))
        expires = iter(state.expires[index].items())
        while chunk_e := list(itertools.islice(expires, FRAME_KEYS)):
            yield _frame(_encoder.encode((index + NUM_DBS, chunk_e)))
        yield from _container_frames(index + 2 * NUM_DBS, data)


def _placeholder(key: bytes, value: Value) -> tuple[bytes, bytes | int]:
    return (key, value) if type(value) is bytes else (key, KIND_CODES[type(value)])


def _elements(value: Value) -> list[bytes | float]:
    if isinstance(value, ZSet):
        return [x for pair in value.scores.items() for x in pair]
    if isinstance(value, Hash):
        return [x for pair in value.items() for x in pair]
    return list(value)


def _container_frames(tag: int, data: dict[bytes, Value]) -> Iterator[bytes]:
    batch: list[tuple[bytes, list[bytes | float]]] = []
    size = 0
    for key, value in data.items():
        if type(value) is bytes:
            continue
        elements = _elements(value)
        step = FRAME_ELEMENTS - FRAME_ELEMENTS % 2
        for start in range(0, len(elements), step):
            part = elements[start : start + step]
            batch.append((key, part))
            size += len(part)
            if size >= FRAME_ELEMENTS:
                yield _frame(_encoder.encode((tag, batch)))
                batch, size = [], 0
    if batch:
        yield _frame(_encoder.encode((tag, batch)))


def _fill(value: Value, part: list[bytes | float]) -> None:
    """Add one frame's elements to a container being restored; ValueError if malformed."""
    if isinstance(value, Hash | ZSet):
        if len(part) % 2:
            raise ValueError("corrupt KV snapshot: an odd number of pair elements")
        for i in range(0, len(part), 2):
            a, b = part[i], part[i + 1]
            if not isinstance(a, bytes):
                raise ValueError("corrupt KV snapshot: a field that is not bytes")
            if isinstance(value, Hash):
                if not isinstance(b, bytes) or a in value:
                    raise ValueError("corrupt KV snapshot: a bad hash field")
                value[a] = b
            else:
                if not isinstance(b, float) or math.isnan(b) or a in value.scores:
                    raise ValueError("corrupt KV snapshot: a bad sorted set member")
                value.add(a, b)
        return
    for e in part:
        if not isinstance(e, bytes):
            raise ValueError("corrupt KV snapshot: an element that is not bytes")
    if isinstance(value, SetValue):
        for e in part:
            if e in value:
                raise ValueError("corrupt KV snapshot: a repeated set member")
            value[e] = None  # type: ignore[index]
    else:
        assert isinstance(value, ListValue)
        value.extend(part)  # type: ignore[arg-type]


def decode_state(data: bytes) -> State:
    """Decode any supported snapshot version.

    Raises:
        ValueError: not a KV snapshot, an unsupported version, or corrupt.
    """
    if not data.startswith(SNAPSHOT_MAGIC):
        return _decode_v1(data)
    version = data[4] if len(data) >= 5 else -1
    if version == 2:
        return _decode_v2(data)
    if version not in (3, SNAPSHOT_VERSION):
        raise ValueError(f"unsupported KV snapshot version {data[4:5]!r}")
    frames = _frames(data, 5)
    state = State()
    entries = [0] * (2 * NUM_DBS)
    try:
        header = _header_decoder.decode(next(frames))
        for frame in frames:
            tag, chunk = _frame_decoder.decode(frame)
            if 0 <= tag < 2 * NUM_DBS:
                entries[tag] += len(chunk)
            if tag < 2 * NUM_DBS and any(isinstance(v, list) for _, v in chunk):
                raise ValueError("corrupt KV snapshot: elements in a key frame")
            if 0 <= tag < NUM_DBS:
                target_data = state.data[tag]
                for key, value in chunk:
                    if isinstance(value, bytes):
                        target_data[key] = value
                    elif isinstance(value, int) and value in _KINDS and version >= 4:
                        target_data[key] = _KINDS[value]()
                    else:
                        raise ValueError("corrupt KV snapshot: a value of no known type")
            elif 2 * NUM_DBS <= tag < 3 * NUM_DBS:
                target_data = state.data[tag - 2 * NUM_DBS]
                for key, part in chunk:
                    container = target_data.get(key)
                    if type(container) is bytes or container is None or not isinstance(part, list):
                        raise ValueError("corrupt KV snapshot: elements of no container")
                    _fill(container, part)
            elif NUM_DBS <= tag < 2 * NUM_DBS:
                target_exp = state.expires[tag - NUM_DBS]
                for key, at in chunk:
                    if not isinstance(at, int) or isinstance(at, bool):
                        raise ValueError("corrupt KV snapshot: an expiry that is not an integer")
                    target_exp[key] = at
            else:
                raise ValueError(f"corrupt KV snapshot: frame tag {tag}")
    except StopIteration:
        raise ValueError("corrupt KV snapshot: no header") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a KV snapshot: {exc}") from exc
    if len(header.keys) != NUM_DBS or len(header.expires) != NUM_DBS:
        raise ValueError("corrupt KV snapshot: wrong number of databases")
    for index in range(NUM_DBS):
        if not (
            len(state.data[index]) == entries[index] == header.keys[index]
            and len(state.expires[index]) == entries[index + NUM_DBS] == header.expires[index]
        ):
            raise ValueError(f"corrupt KV snapshot: key counts of database {index} differ")
        if any(not v for v in state.data[index].values() if type(v) is not bytes):
            raise ValueError(f"corrupt KV snapshot: an empty container in database {index}")
        if any(k not in state.data[index] for k in state.expires[index]):
            raise ValueError(f"corrupt KV snapshot: a TTL without its key in database {index}")
    state.applied, state.now = header.applied, header.now
    state.sessions, state.watchers, state.scripts = header.sessions, header.watchers, header.scripts
    state.users = header.users
    return state


def _decode_v2(data: bytes) -> State:
    frames = _frames(data, 5)
    state = State()
    try:
        header = _header_v2_decoder.decode(next(frames))
        total = 0
        for frame in frames:
            chunk = _frame_v2_decoder.decode(frame)
            total += len(chunk)
            state.data[0].update(chunk)
    except StopIteration:
        raise ValueError("corrupt KV snapshot: no header") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a KV snapshot: {exc}") from exc
    if total != header.keys or len(state.data[0]) != total:
        raise ValueError(
            f"corrupt KV snapshot: {total} entries, {len(state.data[0])} distinct keys, "
            f"where the header says {header.keys}"
        )
    state.applied, state.sessions = header.applied, header.sessions
    return state


def _decode_v1(data: bytes) -> State:
    try:
        snap = _v1_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a KV snapshot: {exc}") from exc
    if snap.version != 1:
        raise ValueError(f"unsupported KV snapshot version {snap.version}")
    if len(snap.keys) != len(snap.values):
        raise ValueError("corrupt KV snapshot: key and value counts differ")
    state = State(applied=snap.applied, sessions=snap.sessions)
    state.data[0] = dict(zip(snap.keys, snap.values, strict=True))
    return state


def _canonical(value: Value) -> object:
    """A value in a form independent of insertion order (a list keeps its order)."""
    if type(value) is bytes:
        return value
    code = KIND_CODES[type(value)]
    if isinstance(value, Hash):
        return (code, sorted(value.items()))
    if isinstance(value, SetValue):
        return (code, sorted(value))
    if isinstance(value, ZSet):
        return (code, sorted((score, m) for m, score in value.scores.items()))
    return (code, list(value))


def digest_state(state: State) -> str:
    """SHA-256 (hex) of the state in a canonical form: keys, TTLs and registrations sorted,
    so replicas that converged agree whatever order they inserted things in."""
    h = hashlib.sha256()
    h.update(_encoder.encode((state.applied, state.now, state.sessions, sorted(state.scripts))))
    h.update(_encoder.encode(sorted((w.wid, w.since, w.dirty, w.keys) for w in state.watchers)))
    if state.users:
        h.update(_encoder.encode(sorted(state.users, key=lambda u: u[0])))
    for index in range(NUM_DBS):
        data, expires = state.data[index], state.expires[index]
        keys = sorted(data)
        h.update(_encoder.encode((index, keys, [_canonical(data[k]) for k in keys])))
        h.update(_encoder.encode(sorted(expires.items())))
    return h.hexdigest()
