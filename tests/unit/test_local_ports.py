"""Local clusters listen outside the kernel's ephemeral port range.

Otherwise a port picked for a node can be taken by some outgoing connection's local port
while the node is down (a chaos kill), and the node cannot restart on it.
"""

from __future__ import annotations

import socket

from pyxos.launch.local_cluster import (
    ADMIN_OFFSET,
    PEER_OFFSET,
    ephemeral_range,
    find_base_port,
    free_ports,
)


def _outside(port: int) -> bool:
    low, high = ephemeral_range()
    return not low <= port <= high


def test_free_ports_are_distinct_free_and_not_ephemeral() -> None:
    ports = free_ports(40)
    assert len(set(ports)) == 40
    assert all(_outside(p) for p in ports)
    for port in ports[:5]:
        # As a node's server binds: with SO_REUSEADDR, so a port that an earlier test's
        # connection left in TIME_WAIT is still free for it.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_a_base_port_keeps_every_node_port_outside_the_ephemeral_range() -> None:
    base = find_base_port(5)
    ports = [base + o + k for o in (0, PEER_OFFSET, ADMIN_OFFSET) for k in range(5)]
    assert all(_outside(p) for p in ports)


def test_ephemeral_range_is_read_from_the_kernel() -> None:
    low, high = ephemeral_range()
    assert 1024 <= low < high <= 65535
