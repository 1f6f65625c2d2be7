"""On-disk record formats and the public snapshot description.

Log keys are 8-byte big-endian slot numbers, so LMDB's byte order is slot order: loading
is one cursor scan and compaction deletes a prefix. Values are msgpack (msgspec), the same
encoding the transport uses, so a slot costs one small record.

Every record is sealed with a CRC-32 of its key and its bytes (:func:`seal`), checked at
load (:func:`unseal`): a flipped bit, a record copied under the wrong key or a torn one
is found before the node votes with it, and reported with the file and the record.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.messages import SlotValue

FORMAT_VERSION = 2
"""Bumped on any incompatible change to the records below; checked on open."""

_MAX_SLOT = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """Describes the current snapshot: what it covers and how to check its bytes.

    ``checksum`` is the CRC-32 of the whole data (``zlib.crc32``): cheap enough to verify
    a 100 MB file at start-up, and a receiver can check a streamed copy against it.
    ``path`` is where the bytes live (``None`` for in-memory storage).
    """

    last_slot: int
    members: tuple[int, ...]
    size: int
    checksum: int
    path: Path | None = None
    ballot: Ballot = ZERO
    """The promise floor: every slot in the snapshot was chosen at or below this ballot,
    so a node restarted from it promises at least this (see ``core.messages.Chosen``)."""
    membership: bytes = b""
    """The membership history the snapshot was taken with (``core.membership``): the
    changes it compacted are in it, so a restart never replays the log after it with an
    older one."""


class Identity(msgspec.Struct, frozen=True, array_like=True):
    """Who a data dir belongs to, written once when the dir is created.

    ``incarnation`` is drawn at random then: a data dir made again after a disk loss has
    another one, which is how the cluster tells it from the one it replaces.
    """

    format: int
    cluster_id: str
    node_id: int
    members: tuple[int, ...]
    incarnation: int


class SnapshotRecord(msgspec.Struct, frozen=True, array_like=True):
    """The meta record of the current snapshot (its bytes are in ``filename``)."""

    last_slot: int
    members: tuple[int, ...]
    size: int
    checksum: int
    filename: str
    ballot: Ballot
    membership: bytes = b""


class StandingRecord(msgspec.Struct, frozen=True, array_like=True):
    """Whether this data dir may vote (``core.ready.Standing``), and if it turned learner,
    the older incarnation a peer holds."""

    standing: str
    superseded: int | None


class IncomingRecord(msgspec.Struct, frozen=True, array_like=True):
    """Side file of a partly received snapshot, so a transfer can resume after a restart.

    ``token`` names the partial file, so that a stale partial file can never be mistaken
    for the one this record describes.
    """

    token: str
    last_slot: int
    members: tuple[int, ...]
    size: int
    checksum: int | None
    ballot: Ballot = ZERO
    membership: bytes = b""


ENCODER = msgspec.msgpack.Encoder()
ENTRY_DECODER = msgspec.msgpack.Decoder(SlotValue)
BALLOT_DECODER = msgspec.msgpack.Decoder(Ballot)
IDENTITY_DECODER = msgspec.msgpack.Decoder(Identity)
SNAPSHOT_DECODER = msgspec.msgpack.Decoder(SnapshotRecord)
INCOMING_DECODER = msgspec.msgpack.Decoder(IncomingRecord)
STANDING_DECODER = msgspec.msgpack.Decoder(StandingRecord)
REGISTRY_DECODER = msgspec.msgpack.Decoder(dict[int, int])

_CRC_BYTES = 4


def seal(key: bytes, payload: bytes) -> bytes:
    """``payload`` with the CRC-32 of ``key`` and ``payload`` in front."""
    return (zlib.crc32(payload, zlib.crc32(key))).to_bytes(_CRC_BYTES, "big") + payload


class DamagedRecord(ValueError):
    """A record that fails its checksum; the message names the file and the record."""


def unseal(key: bytes, raw: bytes | memoryview, where: str) -> bytes:
    """The payload of a sealed record, checked; :class:`DamagedRecord` if it fails."""
    data = bytes(raw)
    if len(data) < _CRC_BYTES:
        raise DamagedRecord(f"{where}: record {key!r} is truncated ({len(data)} bytes)")
    payload = data[_CRC_BYTES:]
    if int.from_bytes(data[:_CRC_BYTES], "big") != zlib.crc32(payload, zlib.crc32(key)):
        raise DamagedRecord(f"{where}: record {key!r} fails its checksum")
    return payload


def slot_key(slot: int) -> bytes:
    """The log key of ``slot``: big-endian so that byte order is numeric order."""
    if not 0 <= slot <= _MAX_SLOT:
        raise ValueError(f"slot {slot} out of range")
    return slot.to_bytes(8, "big")


def key_slot(key: bytes | memoryview) -> int:
    """Inverse of :func:`slot_key`."""
    return int.from_bytes(key, "big")


def encode_u64(value: int) -> bytes:
    """A counter such as the commit index, fixed width."""
    return slot_key(value)


def decode_u64(data: bytes | memoryview) -> int:
    """Inverse of :func:`encode_u64`; rejects a record of the wrong size."""
    if len(data) != 8:
        raise ValueError(f"expected 8 bytes, got {len(data)}")
    return int.from_bytes(data, "big")


def normalize_members(members: Iterable[int]) -> tuple[int, ...]:
    """Members as the core's ``Config`` keeps them: sorted, so comparisons are stable."""
    return tuple(sorted(members))


ENGINE_MARKERS: dict[str, tuple[str, ...]] = {"sqlite": ("sqlite", "pyxos.db"), "lmdb": ("lmdb",)}
"""The path inside a data dir that shows which storage engine made it."""


def engine_of(path: str | os.PathLike[str]) -> str | None:
    """The engine whose store the data dir at ``path`` holds, if any."""
    for engine, parts in ENGINE_MARKERS.items():
        if Path(path, *parts).exists():
            return engine
    return None
