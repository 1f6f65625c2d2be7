"""Where each batch is written: everyone's on the I/O thread by default; with
``inline_writes=True`` a follower's on its event loop's thread, a leader's still on its
I/O thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from inproc import InprocCluster

from pyxos.core.ready import Persist
from pyxos.runtime.node import Node


def _record_threads(node: Node) -> list[tuple[str, int]]:
    """Wrap the node's storage so that each write notes its thread and command count."""
    seen: list[tuple[str, int]] = []
    write = node.storage.write

    def traced(persist: Persist) -> None:
        commands = sum(len(entry.value) for entry in persist.entries)
        seen.append((threading.current_thread().name, commands))
        write(persist)

    node.storage.write = traced  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("inline", [True, False, None])
async def test_where_each_node_writes_its_batches(tmp_path: Path, inline: bool | None) -> None:
    options = {} if inline is None else {"inline_writes": inline}
    cluster = InprocCluster(tmp_path, **options)
    await cluster.start()
    try:
        leader = await cluster.leader()
        threads = {i: _record_threads(node) for i, node in cluster.nodes.items()}
        for i in range(20):  # one at a time: small batches
            await leader.submit(b"one%d" % i)
        replies = await asyncio.gather(*(leader.submit(b"c%d" % i) for i in range(400)))
        assert sorted(int(r) for r in replies) == list(range(21, 421))
        for i, node in cluster.nodes.items():
            await node.wait_for(lambda i=i: len(cluster.machine(i).items) == 420)
            assert cluster.machine(i).items == cluster.machine(leader.id).items
        main = threading.current_thread().name
        for i, seen in threads.items():
            assert seen, f"node {i} wrote nothing"
            on_loop = [n for name, n in seen if name == main]
            on_io = [n for name, n in seen if name != main]
            assert all(name.startswith(f"pyxos-io-{i}") for name, _ in seen if name != main)
            if inline and i != leader.id:
                assert not on_io
            else:
                assert not on_loop
    finally:
        await cluster.close()


async def test_a_follower_writing_inline_survives_a_restart_with_everything_it_acked(
    tmp_path: Path,
) -> None:
    cluster = InprocCluster(tmp_path, inline_writes=True)
    await cluster.start()
    try:
        leader = await cluster.leader()
        follower = next(i for i in cluster.nodes if i != leader.id)
        for i in range(50):
            await leader.submit(b"a%d" % i)
        await cluster.nodes[follower].wait_for(lambda: len(cluster.machine(follower).items) == 50)
        await cluster.stop(follower)
        await cluster.start(follower)
        node = cluster.nodes[follower]
        await node.wait_for(lambda: len(cluster.machine(follower).items) >= 50)
        assert cluster.machine(follower).items[:50] == [b"a%d" % i for i in range(50)]
    finally:
        await cluster.close()
