"""The interface every replicated application implements.

It lives in ``core`` because it is the contract between the protocol and the
application, and every layer above may name it without importing upwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class StateMachine(Protocol):
    """A deterministic application driven by the chosen log.

    ``apply`` must be a pure function of the current state and the command: no clocks,
    randomness, I/O or iteration over unordered sets. Every replica applies the same
    commands in the same order and must reach the same state and return the same replies,
    which is what lets any replica answer the client that submitted a command.
    """

    def apply(self, command: bytes) -> bytes:
        """Apply one chosen command and return the reply for the client that sent it."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the whole state, so that the log below it can be compacted."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with one produced by :meth:`snapshot`."""
        ...


@runtime_checkable
class ConcurrentSnapshots(Protocol):
    """Optional: a state machine whose snapshots may be built and decoded off the loop.

    A runtime that finds these methods uses them so that a big state never holds its event
    loop for long: it calls :meth:`snapshot_stream` where commands are applied (the capture
    must be cheap) and iterates the result in a worker thread; it calls
    :meth:`prepare_restore` in a worker thread and the returned swap where commands are
    applied. Without them the runtime calls ``snapshot`` and ``restore`` directly.
    """

    def snapshot_stream(self) -> Iterator[bytes]:
        """Capture the state now; the iterator yields the snapshot's bytes in pieces and
        must not depend on commands applied after this call."""
        ...

    def prepare_restore(self, data: bytes) -> Callable[[], None]:
        """Decode ``data`` without touching the live state; return what swaps it in.

        Raises ``ValueError`` when ``data`` is not a snapshot this machine understands.
        """
        ...
