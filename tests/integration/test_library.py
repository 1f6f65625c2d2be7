"""The library API: replicate a user's own object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from inproc import free_ports

import pyxos
from pyxos.runtime.sessions import SessionStateMachine, encode_request

ROOT = Path(__file__).parents[2]


class Account:
    def __init__(self) -> None:
        self.balance = 0

    @pyxos.command
    def deposit(self, amount: int) -> int:
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount
        return self.balance

    @pyxos.query
    def read(self) -> int:
        return self.balance

    def not_replicated(self) -> None:
        pass


async def test_three_replicas_of_an_object_in_one_process(tmp_path: Path) -> None:
    ports = free_ports(3)
    cluster = {i + 1: ("127.0.0.1", p) for i, p in enumerate(ports)}
    replicas = [
        pyxos.Replicated(Account(), node_id=k, cluster=cluster, data_dir=tmp_path / str(k))
        for k in (1, 2, 3)
    ]
    for r in replicas:
        await r.__aenter__()
    try:
        await replicas[0].wait_for_leader()
        assert await replicas[0].deposit(10) == 10
        assert await replicas[2].deposit(5) == 15
        assert await replicas[1].read() == 15
        with pytest.raises(ValueError, match="positive"):
            await replicas[1].deposit(-1)
        with pytest.raises(AttributeError):
            replicas[0].not_replicated  # noqa: B018
        for r in replicas:
            await r.node.wait_for(lambda r=r: r._obj.balance == 15)
    finally:
        for r in replicas:
            await r.__aexit__(None, None, None)


def test_sessions_apply_a_retried_request_once() -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        def apply(self, command: bytes) -> bytes:
            self.n += 1
            return b"%d" % self.n

        def snapshot(self) -> bytes:
            return b"%d" % self.n

        def restore(self, data: bytes) -> None:
            self.n = int(data)

    sm = SessionStateMachine(Counter())
    assert sm.apply(encode_request(7, 1, b"x")) == b"1"
    assert sm.apply(encode_request(7, 1, b"x")) == b"1"  # retry: cached, not re-applied
    assert sm.apply(encode_request(7, 2, b"x")) == b"2"
    assert sm.apply(encode_request(7, 1, b"x")) != b"3"  # stale: never applied again
    copy = SessionStateMachine(Counter())
    copy.restore(sm.snapshot())
    assert copy.apply(encode_request(7, 2, b"x")) == b"2"
    assert copy.apply(encode_request(8, 1, b"x")) == b"3"


def test_the_readme_example_runs_across_three_processes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "replicated_counter.py")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    lines = sorted(out.stdout.decode().splitlines())
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert lines == [f"node {k}: counter = 300" for k in (1, 2, 3)]
