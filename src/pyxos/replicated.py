"""Replicate any deterministic Python object: the library API.

Mark the methods that change state with :func:`command` and those that only look with
:func:`query`, then wrap the object::

    class Counter:
        def __init__(self) -> None:
            self.value = 0

        @pyxos.command
        def incr(self, n: int = 1) -> int:
            self.value += n
            return self.value

        @pyxos.query
        def get(self) -> int:
            return self.value

    async with pyxos.Replicated(Counter(), node_id=1, cluster="1=...,2=...,3=...",
                                data_dir="data/1") as counter:
        await counter.incr(5)        # durable on a quorum, applied exactly once
        await counter.get()          # linearizable

Guarantees: a command returns once it is chosen, written to disk on a majority and
applied here; retries after a timeout reuse the request id, so a command is applied at
most once even when its first attempt's outcome was unknown; a query sees every command
that completed before it began. Commands must be deterministic: no clocks, randomness or
I/O; arguments and results must be picklable. The object's state is snapshotted with
``pickle``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pyxos.runtime.config import NodeConfig, parse_cluster
from pyxos.runtime.errors import UnknownOutcome
from pyxos.runtime.node import Node
from pyxos.runtime.sessions import SessionStateMachine, encode_request

F = TypeVar("F", bound=Callable[..., Any])

_COMMAND = "__pyxos_command__"
_QUERY = "__pyxos_query__"


def command(method: F) -> F:
    """Mark a method that changes state: it goes through the replicated log."""
    setattr(method, _COMMAND, True)
    return method


def query(method: F) -> F:
    """Mark a read-only method: served after a linearizable read index, never logged."""
    setattr(method, _QUERY, True)
    return method


class ObjectStateMachine:
    """Adapts a user object to the StateMachine protocol."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def apply(self, command_bytes: bytes) -> bytes:
        try:
            name, args, kwargs = pickle.loads(command_bytes)
            method = getattr(self.obj, name)
            if not getattr(method, _COMMAND, False):
                raise AttributeError(f"{name} is not a @pyxos.command")
            result = method(*args, **kwargs)
            return pickle.dumps((True, result))
        except Exception as exc:
            # Deterministic: every replica raises the same error for the same command.
            return pickle.dumps((False, exc))

    def snapshot(self) -> bytes:
        return pickle.dumps(self.obj.__dict__)

    def restore(self, data: bytes) -> None:
        self.obj.__dict__.clear()
        self.obj.__dict__.update(pickle.loads(data))


class Replicated:
    """A proxy that runs one replica of ``obj`` and forwards marked methods through it."""

    def __init__(
        self,
        obj: Any,
        *,
        node_id: int,
        cluster: str | dict[int, tuple[str, int]],
        data_dir: str | Path,
        secret: bytes = b"pyxos-insecure-default-secret",
        timeout: float = 5.0,
        retries: int = 3,
        **node_options: Any,
    ) -> None:
        members = parse_cluster(cluster) if isinstance(cluster, str) else dict(cluster)
        self._obj = obj
        self._machine = SessionStateMachine(ObjectStateMachine(obj))
        config = NodeConfig(node_id, members, Path(data_dir), secret=secret, **node_options)
        self._node = Node(config, self._machine)
        self._client_id = int.from_bytes(os.urandom(8), "big") >> 1 or 1
        self._seq = 0
        self._timeout = timeout
        self._retries = retries

    @property
    def node(self) -> Node:
        return self._node

    async def __aenter__(self) -> Replicated:
        await self._node.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._node.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._obj, name)
        if getattr(method, _COMMAND, False):
            return lambda *args, **kwargs: self._call(name, args, kwargs)
        if getattr(method, _QUERY, False):
            return lambda *args, **kwargs: self._query(method, args, kwargs)
        raise AttributeError(f"{name} is neither a @pyxos.command nor a @pyxos.query")

    async def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._seq += 1
        payload = encode_request(self._client_id, self._seq, pickle.dumps((name, args, kwargs)))
        last: Exception | None = None
        node = self._node
        for _ in range(self._retries + 1):
            try:
                # The fast path awaits the node's future itself (no coroutine of the node's
                # per call); without a known leader, submit() waits for one.
                future = node.submit_future(payload, self._timeout)
                reply = await (
                    future if future is not None else node.submit(payload, self._timeout)
                )
            except UnknownOutcome as exc:
                last = exc
                continue  # same request id: applied at most once
            ok, value = pickle.loads(reply)
            if ok:
                return value
            raise value
        assert last is not None
        raise last

    async def _query(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return await self._node.read(lambda _: method(*args, **kwargs), self._timeout)

    async def wait_for_leader(self, timeout: float = 10.0) -> int:
        """Wait until some node is known to lead; returns its id."""
        await self._node.wait_for(lambda: self._node.leader_id is not None, timeout)
        leader = self._node.leader_id
        assert leader is not None
        return leader
