"""Hostile and broken input on the peer port (docs/DESIGN.md section 3, rule 6).

Each case uses a raw socket; each must close that one connection with a logged reason, and
the node must go on serving: a message from a legitimate peer still arrives afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Accepted, encode
from pyxos.transport import Transport, TransportConfig
from pyxos.transport.framing import (
    KIND_CONTROL,
    KIND_MESSAGE,
    PROTOCOL_VERSION,
    Hello,
    Proof,
    Welcome,
    control_frame,
    decode_control,
    message_frames,
)
from pyxos.transport.handshake import HandshakeError, RejectReason
from pyxos.transport.testing import Inbox, RawPeer, eventually, local_members

CLUSTER = "test-cluster"
SECRET = b"0123456789abcdef-test-secret"
UNREACHABLE = "10.255.255.1"  # node 4 is configured here; nobody here can dial from it
CONFIG = TransportConfig(
    max_frame_size=65536,
    chunk_size=16384,
    handshake_timeout=30.0,  # so that a prompt close is never a timeout in disguise
    ping_interval=0.05,
    idle_timeout=5.0,
    backoff_initial=0.01,
    backoff_max=0.1,
)

T = TypeVar("T")


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def acc(src: int, slot: int) -> Accepted:
    return Accepted(src, Ballot(1, src), slot, slot)


@dataclass
class Node1:
    """Node 1 listening, node 2 a legitimate peer of it, node 3 the raw socket's identity."""

    t1: Transport
    t2: Transport
    inbox: Inbox
    slot: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.t1.address

    async def still_serving(self) -> None:
        self.slot += 1
        assert self.t2.send(1, acc(2, self.slot))
        assert await self.inbox.get() == acc(2, self.slot)
        assert self.t1.stats().handler_errors == 0

    async def raw(self) -> RawPeer:
        return await RawPeer.connect(*self.address)

    async def authenticated_raw(self) -> RawPeer:
        raw = await self.raw()
        await raw.dial_handshake(node_id=3, listener_id=1, cluster_id=CLUSTER, secret=SECRET)
        await eventually(lambda: self.t1.peer_status()[3].inbound_connected)
        return raw


async def start_node1(config: TransportConfig = CONFIG) -> Node1:
    members = local_members([1, 2, 3])
    members[4] = (UNREACHABLE, 1)
    inbox = Inbox()
    t1 = Transport(1, CLUSTER, SECRET, members, inbox, config=config)
    t2 = Transport(2, CLUSTER, SECRET, members, lambda _m: None, config=config)
    await t1.start()
    await t2.start()
    return Node1(t1, t2, inbox)


@pytest.fixture
async def node1(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Node1]:
    caplog.set_level(logging.INFO, logger="pyxos.transport")
    node = await start_node1()
    await node.still_serving()  # node 2's link is up before the abuse starts
    yield node
    # The abuse never disturbed the legitimate link.
    assert not node.t1.stats().peers[2].closed
    assert node.t2.stats().peers[1].connects == 1
    await node.t2.close()
    await node.t1.close()
    assert node.t1.stats().handler_errors == 0


# --- before the handshake -------------------------------------------------------------------

PRE_HANDSHAKE = {
    "random_bytes": (random.Random(1).randbytes(512), True, "malformed"),
    "truncated_frame_then_eof": (struct.pack(">I", 100) + b"x" * 10, True, "truncated_frame"),
    # Not followed by EOF: the listener must refuse on the prefix alone, not wait for a body.
    "prefix_over_limit": (b"\x7f\xff\xff\xff", False, "frame_too_large"),
    "prefix_over_handshake_limit": (struct.pack(">I", 5000) + b"x" * 100, False, "frame_too_large"),
    "empty_frame": (b"\x00\x00\x00\x00", False, "empty_frame"),
    "message_before_handshake": (message_frames(acc(3, 1), 1 << 20)[0], False, "frame kind"),
    "garbage_control": (frame(KIND_CONTROL, b"\xc1\xc1"), False, "bad_control"),
    # msgspec raises UnicodeDecodeError, not DecodeError, for this one
    "invalid_utf8_in_hello": (
        frame(KIND_CONTROL, b"\x95\xa5hello\x01\xa2\xc7\x00\x03\xc4\x00"),
        False,
        "UnicodeDecodeError",
    ),
    # deep nesting (the typed decoder refuses it early)
    "deeply_nested_control": (frame(KIND_CONTROL, b"\x91" * 3000 + b"\x01"), False, "bad_control"),
    "proof_before_hello": (control_frame(Proof(b"x" * 32)), False, "expected Hello"),
    "eof_right_away": (b"", True, "closed"),
}


@pytest.mark.parametrize("case", list(PRE_HANDSHAKE))
async def test_bad_bytes_before_the_handshake(
    node1: Node1, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    data, eof, logged = PRE_HANDSHAKE[case]
    raw = await node1.raw()
    try:
        raw.send_raw(data)
        if eof:
            raw.writer.write_eof()
        await raw.wait_closed_by_peer(timeout=10)
    finally:
        raw.close()
    assert sum(node1.t1.stats().rejected_handshakes.values()) == 1
    assert "rejected inbound handshake" in caplog.text
    assert logged in caplog.text
    await node1.still_serving()


def hello(node_id: int = 3, cluster_id: str = CLUSTER, version: int = PROTOCOL_VERSION) -> bytes:
    return control_frame(Hello(version, cluster_id, node_id, b"n" * 32))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (hello(cluster_id="another-cluster"), RejectReason.WRONG_CLUSTER),
        (hello(version=PROTOCOL_VERSION + 1), RejectReason.WRONG_VERSION),
        (hello(node_id=9), RejectReason.NOT_MEMBER),
        (hello(node_id=1), RejectReason.OWN_ID),
        # node 4 is configured at a literal non-loopback IP; this socket comes from 127.0.0.1
        (hello(node_id=4), RejectReason.ADDRESS_MISMATCH),
        (control_frame(Hello(PROTOCOL_VERSION, CLUSTER, 3, b"short")), RejectReason.MALFORMED),
    ],
    ids=lambda v: v.value if isinstance(v, RejectReason) else "",
)
async def test_hello_is_rejected(
    node1: Node1, caplog: pytest.LogCaptureFixture, data: bytes, reason: RejectReason
) -> None:
    raw = await node1.raw()
    try:
        raw.send_raw(data)
        # rejected before the listener answers anything: the first thing we see is EOF
        assert await asyncio.wait_for(raw.reader.read(), 10) == b""
    finally:
        raw.close()
    assert node1.t1.stats().rejected_handshakes == {reason.value: 1}
    assert reason.value in caplog.text
    await node1.still_serving()


async def test_bad_proof_fails_authentication(
    node1: Node1, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await node1.raw()
    try:
        raw.send_raw(hello(node_id=3))
        welcome = decode_control((await raw.frames.read_frame())[1:])
        assert isinstance(welcome, Welcome) and welcome.node_id == 1
        raw.send_raw(control_frame(Proof(b"\x00" * 32)))
        await raw.wait_closed_by_peer()
    finally:
        raw.close()
    stats = node1.t1.stats()
    assert stats.rejected_handshakes == {"bad_hmac": 1}
    assert stats.peers[3].rejected_handshakes == {"bad_hmac": 1}
    assert "bad_hmac" in caplog.text
    await node1.still_serving()


async def test_wrong_secret_is_caught_by_both_sides(
    node1: Node1, caplog: pytest.LogCaptureFixture
) -> None:
    raw = await node1.raw()
    try:
        with pytest.raises(HandshakeError) as info:
            await raw.dial_handshake(
                node_id=3, listener_id=1, cluster_id=CLUSTER, secret=b"not the secret"
            )
        assert info.value.reason is RejectReason.BAD_HMAC  # the listener's proof fails for us
    finally:
        raw.close()
    # ... and we never sent a proof, so the listener saw us hang up mid-handshake
    await eventually(lambda: node1.t1.stats().rejected_handshakes == {"closed": 1})
    await node1.still_serving()


async def test_handshake_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyxos.transport")
    config = TransportConfig(handshake_timeout=0.2, ping_interval=0.05)
    node = await start_node1(config)
    try:
        silent = await node.raw()
        slow = await node.raw()
        try:
            slow.send_raw(hello(node_id=3)[:7])  # a slowloris: part of a Hello, then nothing
            await silent.wait_closed_by_peer()
            await slow.wait_closed_by_peer()
        finally:
            silent.close()
            slow.close()
        assert node.t1.stats().rejected_handshakes == {"timeout": 2}
        assert "timeout" in caplog.text
        await node.still_serving()
    finally:
        await node.t2.close()
        await node.t1.close()


# --- after the handshake --------------------------------------------------------------------

POST_HANDSHAKE = {
    # case: (bytes sent after a valid message, close reason)
    "frame_too_large": (struct.pack(">I", 65537), "frame_too_large"),  # refused on the prefix
    "undecodable_msgpack": (frame(KIND_MESSAGE, b"\xc1\xff\x00"), "undecodable_message"),
    "unknown_message_type": (
        frame(KIND_MESSAGE, msgspec.msgpack.encode(["nope", 3, 1])),
        "undecodable_message",
    ),
    "wrong_message_shape": (
        frame(KIND_MESSAGE, msgspec.msgpack.encode(["p2b", "x"])),
        "undecodable_message",
    ),
    "unknown_frame_kind": (frame(0x7F, b"whatever"), "unknown_frame_kind"),
    "bad_control": (frame(KIND_CONTROL, b"\x93\x01\x02\x03"), "bad_control"),
    "deeply_nested_message": (frame(KIND_MESSAGE, b"\x91" * 3000 + b"\x01"), "undecodable_message"),
    "handshake_frame_again": (hello(node_id=3), "unexpected_control"),
    # node 3 speaking for node 2
    "src_mismatch": (frame(KIND_MESSAGE, encode(acc(2, 1))), "src_mismatch"),
    "truncated_frame_then_eof": (struct.pack(">I", 50) + b"\x01abc", "truncated_frame"),
    # a chunk run interrupted by a plain message frame
    "interrupted_chunks": (
        frame(KIND_CONTROL, msgspec.msgpack.encode(["chunk", b"abc", False]))
        + message_frames(acc(3, 1), 1 << 20)[0],
        "bad_chunk",
    ),
}


@pytest.mark.parametrize("case", list(POST_HANDSHAKE))
async def test_bad_frames_after_the_handshake(
    node1: Node1, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    data, reason = POST_HANDSHAKE[case]
    raw = await node1.authenticated_raw()
    try:
        # a valid message first: the link really works until the bad frame
        raw.send_raw(message_frames(acc(3, 0), 1 << 20)[0])
        assert await node1.inbox.get() == acc(3, 0)
        raw.send_raw(data)
        if case == "truncated_frame_then_eof":
            raw.writer.write_eof()
        await raw.wait_closed_by_peer()
    finally:
        raw.close()
    await eventually(lambda: node1.t1.stats().peers[3].closed[reason] == 1)
    assert f"closed inbound connection with node 3: {reason}" in caplog.text
    assert node1.inbox.queue.empty()
    await node1.still_serving()


async def test_chunked_message_over_the_size_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pyxos.transport")
    config = TransportConfig(chunk_size=1024, max_message_size=4096, max_frame_size=8192)
    node = await start_node1(config)
    raw = await node.authenticated_raw()
    try:
        chunk = frame(KIND_CONTROL, msgspec.msgpack.encode(["chunk", b"z" * 1000, False]))
        raw.send_raw(chunk * 5)  # 5000 bytes and still not final
        await raw.wait_closed_by_peer()
        await eventually(lambda: node.t1.stats().peers[3].closed["message_too_large"] == 1)
        await node.still_serving()
    finally:
        raw.close()
        await node.t2.close()
        await node.t1.close()


# --- fuzzing the listener before the handshake -------------------------------------------------


class LoopThread:
    """An event loop in a thread, so that synchronous hypothesis tests can drive it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def _valid_hello() -> bytes:
    return hello(node_id=3)


fuzz_input = st.one_of(
    st.binary(max_size=600),
    # a plausible prefix in front of random bytes, so the parser gets past the length check
    st.binary(max_size=400).map(lambda b: struct.pack(">I", len(b)) + b),
    st.tuples(st.sampled_from([KIND_CONTROL, KIND_MESSAGE, 0, 0xFF]), st.binary(max_size=300)).map(
        lambda kb: frame(kb[0], kb[1])
    ),
    # structurally valid Hellos with arbitrary field values
    st.builds(
        lambda v, c, n, nonce: control_frame(Hello(v, c, n, nonce)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=40),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.binary(max_size=64),
    ),
    # a valid Hello, mutated: bytes flipped, cut short, or with junk after it
    st.tuples(st.integers(min_value=0, max_value=200), st.integers(0, 255), st.binary()).map(
        lambda t: _valid_hello()[: t[0]] + bytes([t[1]]) + _valid_hello()[t[0] + 1 :] + t[2]
    ),
    st.binary(max_size=200).map(lambda b: _valid_hello() + b),
    # any msgpack-ish control payload
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.binary(max_size=40)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=6),
        max_leaves=20,
    ).map(lambda obj: frame(KIND_CONTROL, msgspec.msgpack.encode(obj))),
)


async def _poke(address: tuple[str, int], data: bytes) -> None:
    raw = await RawPeer.connect(*address)
    try:
        raw.send_raw(data)
        raw.writer.write_eof()
        await raw.wait_closed_by_peer(timeout=20)
    finally:
        raw.close()


def test_fuzz_the_listener_before_the_handshake() -> None:
    logging.getLogger("pyxos.transport").setLevel(logging.ERROR)  # thousands of rejections
    runner = LoopThread()
    node = runner.run(start_node1())
    try:
        runner.run(node.still_serving())

        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(data=fuzz_input)
        def poke(data: bytes) -> None:
            runner.run(_poke(node.address, data))

        poke()

        async def settle() -> None:
            await eventually(lambda: node.t1.active_inbound_handlers == 1)  # node 2 only
            await node.still_serving()

        runner.run(settle())
        stats = node.t1.stats()
        assert stats.handler_errors == 0
        assert sum(stats.rejected_handshakes.values()) >= 300
        assert not stats.peers[2].closed
        assert runner.errors == []  # nothing escaped to the loop's exception handler
    finally:

        async def shutdown() -> None:
            await node.t2.close()
            await node.t1.close()

        runner.run(shutdown())
        runner.stop()
        logging.getLogger("pyxos.transport").setLevel(logging.NOTSET)
