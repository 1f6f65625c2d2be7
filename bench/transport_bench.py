"""Messages per second through one transport connection on loopback.

Node 2 sends ``--count`` small ``Accepted`` messages to node 1, pipelined (in windows of
``--window`` so the bounded queue never overflows); node 1 times from the arrival of the first
message to the arrival of the last, in its ``on_message`` callback. By default the receiver
runs in a child process so the two ends do not share one CPU; ``--same-process`` puts both on
one event loop (the number then counts the sender's and the receiver's work together). Uses
uvloop when it is importable.

    .venv/bin/python bench/transport_bench.py [--count 1000000] [--same-process] [--no-uvloop]

Prints one human line and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from typing import Any

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Accepted, Message
from pyxos.transport import Transport, TransportConfig
from pyxos.transport.testing import local_members

CLUSTER = "bench"
SECRET = b"bench-secret-0123456789abcdef"


def _install_uvloop(enabled: bool) -> str:
    if enabled:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


async def _receiver(
    members: dict[int, tuple[str, int]], count: int, ready: Callable[[], None]
) -> float:
    """Run node 1 until ``count`` messages arrived; return the seconds from first to last."""
    done = asyncio.get_running_loop().create_future()
    seen = 0
    first = 0.0

    def on_message(_message: Message) -> None:
        nonlocal seen, first
        if seen == 0:
            first = time.perf_counter()
        seen += 1
        if seen == count:
            done.set_result(time.perf_counter() - first)

    node = Transport(1, CLUSTER, SECRET, members, on_message)
    await node.start()
    ready()
    try:
        return float(await asyncio.wait_for(done, 600))
    finally:
        await node.close()


async def _sender(members: dict[int, tuple[str, int]], count: int, window: int) -> Transport:
    """Send ``count`` messages from node 2, keeping at most ~``window`` queued.

    Returns the still-open transport: the caller closes it once the receiver has them all.
    """
    cfg = TransportConfig(queue_limit=window * 2)
    node = Transport(2, CLUSTER, SECRET, members, lambda _m: None, config=cfg)
    await node.start()
    message = Accepted(2, Ballot(7, 2), 1000, 1000)
    # The first message dials; the receiver's clock starts when it arrives.
    node.send(1, message)
    while not node.peer_status()[1].connected:
        await asyncio.sleep(0.001)
    sent = 1
    while sent < count:
        burst = min(window, count - sent)
        for _ in range(burst):
            node.send(1, message)
        sent += burst
        await asyncio.sleep(0)
        while node.peer_status()[1].queued > window:
            await asyncio.sleep(0)
    dropped = node.stats().peers[1].dropped_queue_full
    if dropped:
        print(f"warning: {dropped} messages dropped by the sender", file=sys.stderr)
    return node


def _child(members: dict[int, tuple[str, int]], count: int, uv: bool, conn: Any) -> None:
    _install_uvloop(uv)
    result = asyncio.run(_receiver(members, count, lambda: conn.send("ready")))
    conn.send(result)


async def _same_process(members: dict[int, tuple[str, int]], count: int, window: int) -> float:
    ready = asyncio.Event()
    receiver = asyncio.create_task(_receiver(members, count, ready.set))
    await ready.wait()
    node = await _sender(members, count, window)
    result = await receiver
    await node.close()
    return float(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    loop_name = _install_uvloop(not args.no_uvloop)
    members = local_members([1, 2])
    if args.same_process:
        elapsed = asyncio.run(_same_process(members, args.count, args.window))
        mode = "same-process"
    else:
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(
            target=_child, args=(members, args.count, not args.no_uvloop, child)
        )
        proc.start()
        assert parent.recv() == "ready"

        async def run_sender() -> None:
            node = await _sender(members, args.count, args.window)
            await asyncio.get_running_loop().run_in_executor(None, parent.poll, 600)
            await node.close()

        asyncio.run(run_sender())
        elapsed = parent.recv()
        proc.join()
        mode = "two-process"
    rate = (args.count - 1) / elapsed
    print(
        f"{args.count:,} Accepted messages over one loopback connection ({loop_name}, {mode}): "
        f"{elapsed:.3f}s, {rate:,.0f} messages/s"
    )
    print(
        json.dumps(
            {
                "messages": args.count,
                "seconds": round(elapsed, 4),
                "messages_per_second": round(rate),
                "loop": loop_name,
                "mode": mode,
            }
        )
    )


if __name__ == "__main__":
    main()
