"""On-disk record formats and the public snapshot description.

Log keys are 8-byte big-endian slot numbers, so LMDB's byte order is slot order: loading
is one cursor scan and compaction deletes a prefix. Values are msgpack (msgspec), the same
encoding the transport uses, so a slot costs one small record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue

FORMAT_VERSION = 1
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


class Identity(msgspec.Struct, frozen=True, array_like=True):
    """Who a data dir belongs to, written once when the dir is created."""

    format: int
    cluster_id: str
    node_id: int
    members: tuple[int, ...]


class SnapshotRecord(msgspec.Struct, frozen=True, array_like=True):
    """The meta record of the current snapshot (its bytes are in ``filename``)."""

    last_slot: int
    members: tuple[int, ...]
    size: int
    checksum: int
    filename: str


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


ENCODER = msgspec.msgpack.Encoder()
ENTRY_DECODER = msgspec.msgpack.Decoder(SlotValue)
BALLOT_DECODER = msgspec.msgpack.Decoder(Ballot)
IDENTITY_DECODER = msgspec.msgpack.Decoder(Identity)
SNAPSHOT_DECODER = msgspec.msgpack.Decoder(SnapshotRecord)
INCOMING_DECODER = msgspec.msgpack.Decoder(IncomingRecord)


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
