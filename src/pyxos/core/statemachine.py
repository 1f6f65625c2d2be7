"""The interface every replicated application implements.

It lives in ``core`` because it is the contract between the protocol and the
application, and every layer above may name it without importing upwards.
"""

from __future__ import annotations

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
