"""A stand-in for ``node.membership`` (and the bit of the node the servers read).

It records what it was asked and answers as the runtime's ``Membership`` does: the
rows of a three-voter cluster, and a refusal or an outage when the test arms one.
"""

from __future__ import annotations

from typing import Any

from pyxos.runtime.errors import PyxosError

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "address": "10.0.0.1:7380",
        "role": "voter",
        "leader": True,
        "caught_up": True,
        "behind": 0,
        "since": 0,
    },
    {
        "id": 2,
        "address": "10.0.0.2:7380",
        "role": "voter",
        "leader": False,
        "caught_up": False,
        "behind": 1200,
        "since": 0,
    },
    {
        "id": 4,
        "address": "10.0.0.4:7380",
        "role": "learner",
        "leader": False,
        "caught_up": None,
        "behind": None,
        "since": 17,
    },
]


class FakeMembership:
    def __init__(self) -> None:
        self.version = 17
        self.calls: list[tuple[Any, ...]] = []
        self.fail: PyxosError | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in ROWS]

    async def change(
        self,
        kind: str,
        node_id: int,
        address: str = "",
        *,
        auto_promote: bool = False,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        self.calls.append((kind, node_id, address, auto_promote))
        if self.fail is not None:
            raise self.fail
        return {
            "kind": kind,
            "node": node_id,
            "slot": 42,
            "version": 42,
            "members": self.rows(),
        }

    async def transfer(self, to: int, timeout: float = 10.0) -> int:
        self.calls.append(("transfer", to))
        if self.fail is not None:
            raise self.fail
        return to


class FakeNode:
    def __init__(self) -> None:
        self.membership = FakeMembership()
        self.leader_id = 1
