"""Packet loss below TCP with nftables (root only): the rules bite, and clear completely."""

from __future__ import annotations

import socket
import subprocess

import pytest

from pyxos.chaos.netfilter import PacketLoss, unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"packet loss: {unavailable_reason()}"
)


def _connects_within(port: int, seconds: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=seconds):
            return True
    except OSError:
        return False


def test_loss_drops_packets_on_the_chosen_port_only_and_clears() -> None:
    with socket.socket() as a, socket.socket() as b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.listen(16)
        lossy, clean = a.getsockname()[1], b.getsockname()[1]
        loss = PacketLoss()
        try:
            loss.set([lossy], 99)
            rules = loss.rules()
            assert f"dport {lossy}" in rules and "numgen random mod 100 < 99" in rules
            # With 99% of SYNs dropped, connecting takes a retransmission (>= 1 s) or more.
            failures = sum(not _connects_within(lossy, 0.3) for _ in range(5))
            assert failures >= 4
            assert _connects_within(clean, 0.3)
            assert loss.dropped_packets() >= 4
        finally:
            loss.clear()
        assert not loss.active
        listed = subprocess.run(
            ["nft", "list", "tables"], check=True, capture_output=True, text=True
        )
        assert loss.table not in listed.stdout
        assert _connects_within(lossy, 0.3)


def test_bad_loss_settings_are_refused() -> None:
    loss = PacketLoss()
    with pytest.raises(ValueError, match="between 1 and 99"):
        loss.set([1234], 100)
    with pytest.raises(ValueError, match="no ports"):
        loss.set([], 10)
    assert not loss.active
