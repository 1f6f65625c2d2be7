"""The state machines of simulated nodes.

:class:`LogApp` only records the applied slots: the oracle and the clients of the default
workload need nothing more. :class:`KVApp` also runs the real
:class:`~pyxos.kv.statemachine.KVStateMachine` on every command, as a server does, so that
the simulator can check what the key-value store makes of the log (expiry, above all): its
snapshot carries the store's own snapshot, and its digest is the store's.
"""

from __future__ import annotations

import msgspec

from pyxos.core.messages import Value
from pyxos.kv.request import decode_request
from pyxos.kv.statemachine import KVStateMachine

__all__ = ["KVApp", "LogApp"]


class LogApp:
    """The sequence of applied slots and their values."""

    __slots__ = ("applied", "commands", "last")

    def __init__(self) -> None:
        self.applied: dict[int, Value] = {}
        self.last = 0
        self.commands: set[bytes] = set()

    def apply(self, slot: int, value: Value) -> tuple[bytes, ...]:
        """Record ``slot``; the replies of its commands (none here)."""
        self.applied[slot] = value
        self.last = slot
        self.commands.update(value)
        return ()

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode([self.last, sorted(self.applied.items())])

    def restore(self, data: bytes) -> None:
        last, items = msgspec.msgpack.decode(data, type=tuple[int, list[tuple[int, Value]]])
        self._restore(last, items)

    def _restore(self, last: int, items: list[tuple[int, Value]]) -> None:
        self.applied = dict(items)
        self.last = last
        self.commands = {c for _, v in items for c in v}


class KVApp(LogApp):
    """:class:`LogApp` around a real key-value store."""

    __slots__ = ("keys_expired", "kv", "stamps_behind")

    def __init__(self) -> None:
        super().__init__()
        self.kv = KVStateMachine()
        self.stamps_behind = 0
        """Commands of the last slot stamped with a time below the replicated clock."""
        self.keys_expired = 0
        """Keys the last slot deleted because their time came."""

    def apply(self, slot: int, value: Value) -> tuple[bytes, ...]:
        """Apply every command of ``slot`` to the store; their RESP2 replies."""
        super().apply(slot, value)
        kv = self.kv
        expired, behind = kv.expired_keys, 0
        replies = []
        for command in value:
            try:
                stamp = decode_request(command).time
            except msgspec.DecodeError:
                stamp = 0
            if 0 < stamp < kv.now:
                behind += 1
            replies.append(kv.apply(command))
        self.stamps_behind = behind
        self.keys_expired = kv.expired_keys - expired
        return tuple(replies)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode([self.last, sorted(self.applied.items()), self.kv.snapshot()])

    def restore(self, data: bytes) -> None:
        last, items, state = msgspec.msgpack.decode(
            data, type=tuple[int, list[tuple[int, Value]], bytes]
        )
        self._restore(last, items)
        self.kv.restore(state)

    def digest(self) -> str:
        return self.kv.digest()
