"""Replicate your own Python class across three processes with pyxos.

    python examples/replicated_counter.py            # starts 3 processes, prints the result

Each process runs one replica of ``Counter``, increments it 100 times and then reads it.
Every process ends up with the same value, 300: the increments of all three went through
one replicated log, were written to disk on a majority, and were applied once each.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile

import pyxos


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.by_node: dict[int, int] = {}

    @pyxos.command
    def incr(self, node: int, n: int = 1) -> int:
        self.value += n
        self.by_node[node] = self.by_node.get(node, 0) + n
        return self.value

    @pyxos.query
    def get(self) -> int:
        return self.value


CLUSTER = "1=127.0.0.1:17101,2=127.0.0.1:17102,3=127.0.0.1:17103"


async def replica(node_id: int, data_dir: str, total: int) -> None:
    async with pyxos.Replicated(
        Counter(), node_id=node_id, cluster=CLUSTER, data_dir=f"{data_dir}/{node_id}"
    ) as counter:
        await counter.wait_for_leader()
        for _ in range(100):
            await counter.incr(node_id)
        # Wait until everyone's increments are in, then read (linearizable).
        while await counter.get() < total:
            await asyncio.sleep(0.05)
        print(f"node {node_id}: counter = {await counter.get()}", flush=True)
        await asyncio.sleep(1.0)  # stay up a moment so the others can finish too


def main() -> None:
    if len(sys.argv) == 3:
        asyncio.run(replica(int(sys.argv[1]), sys.argv[2], 300))
        return
    data_dir = tempfile.mkdtemp(prefix="pyxos-counter-")
    procs = [subprocess.Popen([sys.executable, __file__, str(k), data_dir]) for k in (1, 2, 3)]
    codes = [p.wait(timeout=120) for p in procs]
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
