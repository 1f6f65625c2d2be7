"""How the member nemesis asks for a change: a refusal that changed nothing because the
cluster is not whole right now is asked again; any other refusal is the run's error."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from pyxos.chaos import member
from pyxos.chaos.member import MemberFaults

NO_QUORUM = "ERR the change would leave 2 voters of which only 1 answer: no quorum"


class FakeRedis:
    """Answers ``PAXOS`` with the scripted replies in turn (an error text raises)."""

    script: list[str] = []
    asked: list[tuple[int, tuple[str, ...]]] = []

    def __init__(self, port: int, socket_timeout: float) -> None:
        self.port = port

    def execute_command(self, *args: str) -> Any:
        FakeRedis.asked.append((self.port, args))
        reply = FakeRedis.script.pop(0)
        if reply.startswith("ERR"):
            raise redis.ResponseError(reply)
        return reply

    def close(self) -> None:
        pass


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> MemberFaults:
    monkeypatch.setattr(member.redis, "Redis", FakeRedis)
    monkeypatch.setattr(member.time, "sleep", lambda _s: None)
    FakeRedis.asked = []
    cluster = SimpleNamespace(
        ids=[1, 2, 3], running=lambda _k: True, client_port=lambda k: 6000 + k
    )
    return MemberFaults(cluster, proxies=None, rng=random.Random(1))  # type: ignore[arg-type]


def test_a_change_refused_for_want_of_a_quorum_is_asked_again(faults: MemberFaults) -> None:
    FakeRedis.script = [NO_QUORUM, NO_QUORUM, "OK"]
    assert faults._paxos(1, "REMOVE", "2") == "OK"
    assert len(FakeRedis.asked) == 3
    assert all(args == ("PAXOS", "REMOVE", "2") for _, args in FakeRedis.asked)
    assert all(port != 6002 for port, _ in FakeRedis.asked[1:])  # never the node removed


def test_a_change_refused_for_another_reason_is_not_asked_again(faults: MemberFaults) -> None:
    FakeRedis.script = ["ERR node 2 is not a member", "OK"]
    with pytest.raises(redis.ResponseError, match="not a member"):
        faults._paxos(1, "REMOVE", "2")
    assert len(FakeRedis.asked) == 1


def test_a_refusal_that_lasts_past_the_deadline_is_the_runs_error(
    faults: MemberFaults, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(0, 10_000, 10))  # each look at the clock is 10 s later
    monkeypatch.setattr(member.time, "monotonic", lambda: float(next(clock)))
    FakeRedis.script = [NO_QUORUM] * 20
    with pytest.raises(redis.ResponseError, match="no quorum"):
        faults._paxos(1, "REMOVE", "2")
    assert 1 < len(FakeRedis.asked) < 20
