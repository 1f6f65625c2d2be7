"""Installing a snapshot while a newer one lands: no slot may be applied twice."""

from __future__ import annotations

from pathlib import Path

import msgspec
from inproc import ListMachine

from pyxos.core.ballot import Ballot
from pyxos.core.driver import Work
from pyxos.launch.local_cluster import free_ports
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.node import Node


def _items(last: int) -> list[bytes]:
    return [b"%d" % i for i in range(1, last + 1)]


async def test_the_node_installs_the_snapshot_it_read_and_skips_what_it_covers(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    machine = ListMachine()
    node = Node(NodeConfig(1, {1: ("127.0.0.1", port)}, tmp_path / "n1"), machine)
    try:
        # The core asked for the snapshot through slot 10, but by the time the node reads
        # it, one through slot 20 has finished arriving and replaced it.
        node.storage.save_snapshot(10, (1,), msgspec.msgpack.encode(_items(10)), Ballot(1, 1))
        node.storage.save_snapshot(20, (1,), msgspec.msgpack.encode(_items(20)), Ballot(1, 1))
        await node.shell.install_snapshot()
        assert node.applied == 20
        # The batch that asked for slot 10 commits 11..22 after it: 11..20 are covered.
        node.shell.carry_out(Work(committed=[(s, (b"%d" % s,)) for s in range(11, 23)]))
        assert machine.items == _items(22)
        assert node.applied == 22
    finally:
        await node.close()
