"""What both clients share: their settings, the conversion of arguments, the typed helpers.

:class:`ClientBase` keeps the endpoints and the retry budget; each client supplies
``execute`` (blocking or a coroutine) and the helpers (``get``, ``set``...) return whatever
it returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pyxos.client.discovery import Endpoint, parse_endpoints

__all__ = ["ClientBase", "new_client_id", "to_bytes"]


def new_client_id() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1 or 1


def to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        raise TypeError("booleans are not Redis values")
    if isinstance(value, int | float | str):
        return str(value).encode()
    raise TypeError(f"cannot send {type(value).__name__} as a Redis value")


class ClientBase:
    """What both clients share: settings, and the typed helpers; ``execute`` does the work."""

    def __init__(
        self,
        endpoints: str | Sequence[str | Endpoint],
        *,
        password: str | None = None,
        timeout: float = 5.0,
        attempts: int = 6,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.password = password
        self.timeout = timeout
        self.attempts = attempts
        self._current = 0
        self._discovered = False
        self._open_state()

    def _open_state(self) -> None:  # pragma: no cover - overridden
        """Set up the connection state of this kind of client (none yet: lazily opened)."""
        raise NotImplementedError

    def _rotate(self, attempt: int) -> float:
        """Move on to the next endpoint (finding the leader again before connecting); the
        seconds to wait first: none while untried endpoints remain, then a doubling backoff
        (50 ms, at most 1 s)."""
        self._current = (self._current + 1) % len(self.endpoints)
        self._discovered = False
        if attempt < len(self.endpoints) - 1:
            return 0.0
        return min(0.05 * 2.0 ** (attempt - len(self.endpoints) + 1), 1.0)

    def execute(self, *argv: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def get(self, key: str | bytes) -> Any:
        return self.execute("GET", key)

    def set(self, key: str | bytes, value: Any) -> Any:
        return self.execute("SET", key, value)

    def delete(self, *keys: str | bytes) -> Any:
        return self.execute("DEL", *keys)

    def incr(self, key: str | bytes, by: int = 1) -> Any:
        return self.execute("INCRBY", key, by)

    def cas(self, key: str | bytes, expected: Any, new: Any) -> Any:
        return self.execute("CAS", key, expected, new)

    def mget(self, *keys: str | bytes) -> Any:
        return self.execute("MGET", *keys)

    def exists(self, *keys: str | bytes) -> Any:
        return self.execute("EXISTS", *keys)
