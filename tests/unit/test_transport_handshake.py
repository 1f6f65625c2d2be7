"""The HMAC challenge-response handshake, driven directly over a loopback socket."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from pyxos.transport.framing import HANDSHAKE_MAX_FRAME, FrameReader
from pyxos.transport.handshake import (
    NONCE_SIZE,
    HandshakeError,
    Identity,
    RejectReason,
    accept,
    address_allowed,
    compute_mac,
    dial,
    new_nonce,
)
from pyxos.transport.peer import Backoff

SECRET = b"handshake-test-secret"
MEMBERS = {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2), 3: ("10.1.2.3", 3)}


def mac(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "cluster_id": "c",
        "dialer_id": 1,
        "listener_id": 2,
        "dialer_nonce": b"a" * 32,
        "listener_nonce": b"b" * 32,
    }
    args.update(overrides)
    secret = args.pop("secret", SECRET)
    role = args.pop("role", "dialer")
    return compute_mac(secret, role, **args)  # type: ignore[arg-type]


def test_mac_binds_every_field() -> None:
    base = mac()
    assert mac() == base and len(base) == 32
    variants: list[dict[str, object]] = [
        {"secret": b"other"},
        {"role": "listener"},
        {"cluster_id": "d"},
        {"dialer_id": 3},
        {"listener_id": 3},
        {"dialer_nonce": b"c" * 32},
        {"listener_nonce": b"c" * 32},
        {"version": 2},
        # swapping the ids must not give the same proof (no reflection)
        {"dialer_id": 2, "listener_id": 1},
    ]
    assert len({mac(**v) for v in variants} | {base}) == len(variants) + 1


def test_nonces_are_fresh() -> None:
    assert len(new_nonce()) == NONCE_SIZE
    assert new_nonce() != new_nonce()


@pytest.mark.parametrize(
    ("configured", "peer", "allowed"),
    [
        ("node-a.example", "192.0.2.9", True),  # host name: not checked
        ("127.0.0.1", "192.0.2.9", True),  # loopback: not checked
        ("::1", "192.0.2.9", True),
        ("0.0.0.0", "192.0.2.9", True),  # wildcard: not checked
        ("::", "192.0.2.9", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "::ffff:10.1.2.3", True),  # v4-mapped from a dual-stack socket
        ("10.1.2.3", "10.1.2.4", False),
        ("10.1.2.3", "127.0.0.1", False),
        ("10.1.2.3", None, False),
        ("2001:db8::1", "2001:db8::1", True),
        ("2001:db8::1", "2001:db8::2", False),
        ("fe80::1", "fe80::1%eth0", True),
    ],
)
def test_address_check(configured: str, peer: str | None, allowed: bool) -> None:
    assert address_allowed(configured, peer) is allowed


@asynccontextmanager
async def listening(
    handler: Callable[[FrameReader, asyncio.StreamWriter, str | None], Awaitable[None]],
) -> AsyncIterator[int]:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(FrameReader(reader, HANDSHAKE_MAX_FRAME), writer, "127.0.0.1")
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def run_pair(
    dialer: Identity, listener: Identity, dial_to: int
) -> tuple[int | HandshakeError, HandshakeError | None]:
    """Run both halves; return (listener's result, dialer's result)."""
    result: asyncio.Future[int | HandshakeError] = asyncio.get_running_loop().create_future()

    async def handler(frames: FrameReader, writer: asyncio.StreamWriter, ip: str | None) -> None:
        try:
            result.set_result(await accept(frames, writer, listener, ip))
        except HandshakeError as exc:
            result.set_result(exc)

    async with listening(handler) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await asyncio.wait_for(dial(FrameReader(reader, 4096), writer, dialer, dial_to), 10)
            dial_result: HandshakeError | None = None
        except HandshakeError as exc:
            dial_result = exc
        finally:
            writer.transport.abort()
        return await asyncio.wait_for(result, 10), dial_result


def ident(node: int, cluster: str = "c", secret: bytes = SECRET) -> Identity:
    return Identity(node, cluster, secret, MEMBERS)


async def test_handshake_succeeds_both_ways() -> None:
    got, dialer_error = await run_pair(ident(1), ident(2), 2)
    assert got == 1
    assert dialer_error is None


@pytest.mark.parametrize(
    ("dialer", "dial_to", "listener_reason", "dialer_reason"),
    [
        # the dialer checks the listener's proof first, and hangs up
        (ident(1, secret=b"wrong"), 2, RejectReason.CLOSED, RejectReason.BAD_HMAC),
        (ident(1, cluster="x"), 2, RejectReason.WRONG_CLUSTER, RejectReason.CLOSED),
        (ident(9), 2, RejectReason.NOT_MEMBER, RejectReason.CLOSED),
        (ident(2), 2, RejectReason.OWN_ID, RejectReason.CLOSED),
        # node 3 is configured at 10.1.2.3; this connection comes from 127.0.0.1
        (ident(3), 2, RejectReason.ADDRESS_MISMATCH, RejectReason.CLOSED),
    ],
)
async def test_handshake_rejections(
    dialer: Identity, dial_to: int, listener_reason: RejectReason, dialer_reason: RejectReason
) -> None:
    got, dialer_error = await run_pair(dialer, ident(2), dial_to)
    assert isinstance(got, HandshakeError)
    assert got.reason is listener_reason
    assert dialer_error is not None
    assert dialer_error.reason is dialer_reason


async def test_dialer_rejects_an_unexpected_listener() -> None:
    # node 1 dials what it believes is node 3 but node 2 answers
    got, dialer_error = await run_pair(ident(1), ident(2), 3)
    assert dialer_error is not None
    assert dialer_error.reason is RejectReason.UNEXPECTED_PEER
    assert isinstance(got, HandshakeError)  # the dialer hung up before sending its proof


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(0.1, 1.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(1.0, 0.1 * 2**i) for i in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 1.0
    backoff.reset()
    assert backoff.next_delay() <= 0.1
    # reproducible from the seed, and not a constant
    again = Backoff(0.1, 1.0, random.Random(7))
    assert [again.next_delay() for _ in range(10)] == delays
    assert len({round(d / c, 6) for d, c in zip(delays, ceilings, strict=True)}) > 1


def test_backoff_survives_many_attempts() -> None:
    backoff = Backoff(0.05, 2.0, random.Random(1))
    for _ in range(5000):
        assert backoff.next_delay() <= 2.0
