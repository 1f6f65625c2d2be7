"""Transport end to end on loopback: delivery, queues, staleness, heartbeats, reconnects."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, get_args

import pytest

from pyxos.core.ballot import Ballot
from pyxos.core.messages import (
    Accepted,
    Chosen,
    Commit,
    CommitAck,
    Forward,
    InstallSnapshot,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Propose,
    ReadIndexReply,
    ReadIndexRequest,
    Reject,
    SlotValue,
    SnapshotRequest,
)
from pyxos.transport import Transport, TransportConfig
from pyxos.transport.framing import (
    HANDSHAKE_MAX_FRAME,
    KIND_CONTROL,
    FrameReader,
    Ping,
    decode_control,
    message_frames,
)
from pyxos.transport.handshake import Identity, accept
from pyxos.transport.testing import Inbox, RawPeer, eventually, local_members

CLUSTER = "test-cluster"
SECRET = b"0123456789abcdef-test-secret"
FAST = TransportConfig(
    ping_interval=0.05,
    idle_timeout=1.0,
    handshake_timeout=5.0,
    connect_timeout=5.0,
    backoff_initial=0.01,
    backoff_max=0.1,
)

Make = Callable[..., tuple[Transport, Inbox]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Transport] = []

    def factory(
        node_id: int,
        members: dict[int, tuple[str, int]],
        config: TransportConfig = FAST,
        **kwargs: Any,
    ) -> tuple[Transport, Inbox]:
        inbox = Inbox()
        transport = Transport(node_id, CLUSTER, SECRET, members, inbox, config=config, **kwargs)
        made.append(transport)
        return transport, inbox

    yield factory
    for transport in made:
        await transport.close()
        assert transport.stats().handler_errors == 0


def acc(src: int, slot: int) -> Accepted:
    return Accepted(src, Ballot(1, src), slot, slot)


async def test_messages_flow_both_ways_in_order(make: Make) -> None:
    members = local_members([1, 2])
    t1, in1 = make(1, members)
    t2, in2 = make(2, members)
    await t1.start()
    await t2.start()
    for slot in range(1000):
        assert t2.send(1, acc(2, slot))
    assert t1.send(2, acc(1, 7))
    assert [await in1.get() for _ in range(1000)] == [acc(2, s) for s in range(1000)]
    assert await in2.get() == acc(1, 7)
    assert t2.stats().peers[1].sent == 1000
    assert t1.stats().peers[2].received == 1000


async def test_every_message_type_round_trips(make: Make) -> None:
    members = local_members([1, 2])
    t1, in1 = make(1, members)
    t2, _ = make(2, members)
    await t1.start()
    await t2.start()
    b = Ballot(4, 2)
    messages: list[Message] = [
        PreVote(2, b),
        PreVoteReply(2, b, True, Ballot(3, 1)),
        Prepare(2, b, 5),
        Promise(2, b, (SlotValue(5, Ballot(1, 1), (b"x",), True),), 4, 0),
        Propose(2, b, 6, ((b"a", b"b"), ()), 5),
        Accepted(2, b, 6, 7),
        Reject(2, b, Ballot(9, 3)),
        Commit(2, b, 7, 3),
        CommitAck(2, b, 7, 3),
        Chosen(2, b, 1, ((b"c",),), 7),
        Forward(2, (b"SET k v",)),
        ReadIndexRequest(2, (1, 2)),
        ReadIndexReply(2, (1, 2), 7),
        SnapshotRequest(2, 3),
        InstallSnapshot(2, 7, (1, 2, 3), b"state"),
    ]
    # message kinds added to the core later travel the same way
    by_tag = {cls.__struct_config__.tag: cls for cls in get_args(Message)}
    if "snc" in by_tag and "snca" in by_tag:
        messages.append(by_tag["snc"](2, 7, (1, 2), 0, 10, 123, b"0123456789"))
        messages.append(by_tag["snca"](2, 7, 10))
    for message in messages:
        assert t2.send(1, message)
    assert [await in1.get() for _ in messages] == messages


async def test_large_snapshot_is_chunked_and_delivered(make: Make) -> None:
    members = local_members([1, 2])
    config = TransportConfig(chunk_size=1024, max_frame_size=8192, ping_interval=0.05)
    t1, in1 = make(1, members, config)
    t2, _ = make(2, members, config)
    await t1.start()
    await t2.start()
    big = InstallSnapshot(2, 1000, (1, 2), bytes(range(256)) * 1000)
    assert t2.send(1, acc(2, 1))
    assert t2.send(1, big)
    assert t2.send(1, acc(2, 2))
    assert await in1.get() == acc(2, 1)
    assert await in1.get() == big
    assert await in1.get() == acc(2, 2)


async def test_send_to_self_or_a_stranger_is_dropped_and_logged(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    t1, _ = make(1, local_members([1, 2]))
    assert not t1.send(1, acc(1, 1))
    assert not t1.send(5, acc(1, 1))
    assert t1.stats().dropped_unknown_destination == 2
    assert "not a peer of node 1" in caplog.text


async def test_full_queue_drops_the_newest_and_counts(make: Make) -> None:
    members = local_members([1, 2])
    config = TransportConfig(queue_limit=3, ping_interval=0.05, backoff_max=0.05)
    t1, _ = make(1, members, config)
    # node 2 is not running: the queue fills, and send() returns at once every time
    results = [t1.send(2, acc(1, slot)) for slot in range(5)]
    assert results == [True, True, True, False, False]
    counters = t1.stats().peers[2]
    assert counters.dropped_queue_full == 2
    assert t1.peer_status()[2].queued == 3
    # once node 2 comes up, the queued (oldest) messages are delivered, in order
    t2, in2 = make(2, members, config)
    await t2.start()
    assert [await in2.get() for _ in range(3)] == [acc(1, 0), acc(1, 1), acc(1, 2)]
    await eventually(lambda: t1.peer_status()[2].connected)
    assert t1.stats().peers[2].connect_failures >= 1


async def test_stale_messages_are_dropped_when_connecting(make: Make) -> None:
    now = [100.0]
    members = local_members([1, 2])
    config = TransportConfig(stale_after=2.0, backoff_initial=0.01, backoff_max=0.05)
    t1, _ = make(1, members, config, clock=lambda: now[0])
    for slot in range(5):
        assert t1.send(2, acc(1, slot))
    await eventually(lambda: t1.stats().peers[2].connect_failures >= 1)
    now[0] += 10.0  # the queued messages are now older than stale_after
    assert t1.send(2, acc(1, 99))  # fresh
    t2, in2 = make(2, members, config)
    await t2.start()
    assert await in2.get() == acc(1, 99)
    assert t1.stats().peers[2].dropped_stale == 5
    assert in2.queue.empty()


async def test_message_over_max_message_size_is_dropped(make: Make) -> None:
    members = local_members([1, 2])
    config = TransportConfig(chunk_size=1024, max_message_size=4096)
    t1, _ = make(1, members, config)
    assert not t1.send(2, InstallSnapshot(1, 1, (1, 2), b"x" * 5000))
    assert t1.stats().peers[2].dropped_too_large == 1
    assert t1.peer_status()[2].queued == 0


async def test_reconnects_after_the_peer_restarts(make: Make) -> None:
    members = local_members([1, 2])
    t1, in1 = make(1, members)
    t2, _ = make(2, members)
    await t1.start()
    await t2.start()
    assert t2.send(1, acc(2, 1))
    assert await in1.get() == acc(2, 1)
    await t1.close()
    await eventually(lambda: not t2.peer_status()[1].connected)
    t1b, in1b = make(1, members)
    await t1b.start()
    assert t2.send(1, acc(2, 2))
    assert await in1b.get() == acc(2, 2)
    counters = t2.stats().peers[1]
    assert counters.connects == 2
    assert counters.reconnects == 1
    assert t2.peer_status()[1].connected


async def test_quiet_connection_is_kept_alive_by_pings(make: Make) -> None:
    members = local_members([1, 2])
    config = TransportConfig(ping_interval=0.02, idle_timeout=0.4)
    t1, in1 = make(1, members, config)
    t2, _ = make(2, members, config)
    await t1.start()
    await t2.start()
    assert t2.send(1, acc(2, 1))
    await in1.get()
    first = time.monotonic()
    # the listener pings the dialer; wait until that has gone on for several idle timeouts
    await eventually(lambda: (t2.peer_status()[1].last_received_monotonic or 0) > first + 1.2)
    await eventually(lambda: (t1.peer_status()[2].last_received_monotonic or 0) > first + 1.2)
    assert t2.stats().peers[1].connects == 1
    assert not t2.stats().peers[1].closed
    assert not t1.stats().peers[2].closed
    assert t2.send(1, acc(2, 2))
    assert await in1.get() == acc(2, 2)


async def test_silent_inbound_connection_is_pinged_then_closed(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    members = local_members([1, 2])
    config = TransportConfig(ping_interval=0.02, idle_timeout=0.3)
    t1, _ = make(1, members, config)
    await t1.start()
    raw = await RawPeer.connect(*t1.address)
    try:
        await raw.dial_handshake(node_id=2, listener_id=1, cluster_id=CLUSTER, secret=SECRET)
        # we never send anything; the listener pings us, then gives up on us
        pings = 0
        async with asyncio.timeout(10):
            while pings < 3:
                for frame in await raw.frames.read_frames():
                    assert frame[0] == KIND_CONTROL
                    assert isinstance(decode_control(frame[1:]), Ping)
                    pings += 1
        await raw.wait_closed_by_peer()
    finally:
        raw.close()
    assert t1.stats().peers[2].closed["idle_timeout"] == 1
    assert "idle_timeout" in caplog.text


async def test_outbound_link_to_a_silent_listener_is_closed_and_redialled(make: Make) -> None:
    """A peer whose socket stays open but says nothing (a partition) is given up on."""
    members = local_members([1, 2])
    accepted = asyncio.Queue[int]()
    pings_seen = asyncio.Event()
    identity = Identity(1, CLUSTER, SECRET, members)

    async def silent_node1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(reader, HANDSHAKE_MAX_FRAME)
        try:
            peer = await accept(frames, writer, identity, "127.0.0.1")
            accepted.put_nowait(peer)
            frames.max_frame = 1 << 20
            while True:  # read what the dialer sends, answer nothing
                for frame in await frames.read_frames():
                    if frame[0] == KIND_CONTROL and isinstance(decode_control(frame[1:]), Ping):
                        pings_seen.set()
        except Exception:
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(silent_node1, *members[1])
    try:
        config = TransportConfig(
            ping_interval=0.02, idle_timeout=0.3, backoff_initial=0.01, backoff_max=0.05
        )
        t2, _ = make(2, members, config)
        assert t2.send(1, acc(2, 1))
        assert await asyncio.wait_for(accepted.get(), 10) == 2
        await asyncio.wait_for(pings_seen.wait(), 10)  # the dialer pings when it is idle
        assert await asyncio.wait_for(accepted.get(), 10) == 2  # ... and redials
        counters = t2.stats().peers[1]
        assert counters.closed["idle_timeout"] >= 1
        assert counters.reconnects >= 1
        await t2.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_new_connection_from_the_same_peer_replaces_the_old(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    members = local_members([1, 2])
    t1, in1 = make(1, members)
    await t1.start()
    old = await RawPeer.connect(*t1.address)
    new = await RawPeer.connect(*t1.address)
    try:
        await old.dial_handshake(node_id=2, listener_id=1, cluster_id=CLUSTER, secret=SECRET)
        await eventually(lambda: t1.peer_status()[2].inbound_connected)
        await new.dial_handshake(node_id=2, listener_id=1, cluster_id=CLUSTER, secret=SECRET)
        await old.wait_closed_by_peer()
        new.send_raw(message_frames(acc(2, 5), 1 << 20)[0])
        assert await in1.get() == acc(2, 5)
    finally:
        old.close()
        new.close()
    assert t1.stats().peers[2].closed["replaced"] == 1
    assert "replacing its previous inbound connection" in caplog.text


async def test_an_exception_in_on_message_is_contained(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    members = local_members([1, 2])
    seen: list[Message] = []

    def flaky(message: Message) -> None:
        seen.append(message)
        if len(seen) == 1:
            raise RuntimeError("bug in the driver")

    t1 = Transport(1, CLUSTER, SECRET, members, flaky, config=FAST)
    t2, _ = make(2, members)
    try:
        await t1.start()
        assert t2.send(1, acc(2, 1))
        assert t2.send(1, acc(2, 2))
        await eventually(lambda: len(seen) == 2)
        assert t1.stats().peers[2].callback_errors == 1
        assert not t1.stats().peers[2].closed
        assert "on_message raised" in caplog.text
    finally:
        await t1.close()


async def test_status_counters_and_logger(make: Make) -> None:
    members = local_members([1, 2, 3])
    t1, in1 = make(1, members)
    t2, _ = make(2, members)
    assert t2.log.name == "pyxos.transport.node2"
    assert set(t2.peer_status()) == {1, 3}
    status = t2.peer_status()[1]
    assert not status.connected
    assert status.last_received_monotonic is None
    await t1.start()
    await t2.start()
    assert t2.send(1, acc(2, 1))
    await in1.get()
    await eventually(lambda: t2.peer_status()[1].last_received_monotonic is not None)
    assert t2.peer_status()[1].connected
    assert t1.peer_status()[2].inbound_connected
    assert not t1.peer_status()[2].connected  # t1 never sent to 2: no outbound link
    snapshot = t2.stats()
    assert t2.send(1, acc(2, 2))
    await in1.get()
    assert snapshot.peers[1].sent == 1  # a copy: later traffic does not change it
    assert t2.stats().peers[1].sent == 2


async def test_close_is_idempotent_and_send_after_close_drops(make: Make) -> None:
    members = local_members([1, 2])
    t1, _ = make(1, members)
    t2, _ = make(2, members)
    await t1.start()
    await t2.start()
    assert t2.send(1, acc(2, 1))
    await eventually(lambda: t2.peer_status()[1].connected)
    await t2.close()
    await t2.close()
    assert not t2.send(1, acc(2, 2))
    assert not t2.peer_status()[1].connected
    await eventually(lambda: not t1.peer_status()[2].inbound_connected)
    await eventually(lambda: t1.active_inbound_handlers == 0)
    with pytest.raises(RuntimeError):
        await t2.start()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        TransportConfig(ping_interval=1.0, idle_timeout=0.5)
    with pytest.raises(ValueError):
        TransportConfig(chunk_size=1 << 20, max_frame_size=1 << 20)
    with pytest.raises(ValueError):
        TransportConfig(queue_limit=0)
    with pytest.raises(ValueError):
        Transport(9, CLUSTER, SECRET, {1: ("127.0.0.1", 1)}, lambda _m: None)
    with pytest.raises(ValueError):
        Transport(1, CLUSTER, b"", {1: ("127.0.0.1", 1)}, lambda _m: None)
