"""The two ways the core refuses to go on, told apart by whom to blame."""

from __future__ import annotations


class UsageError(RuntimeError):
    """The driver broke the ``ready``/``advance`` contract."""


class InvariantViolation(RuntimeError):
    """The core caught itself about to break a safety rule: stop rather than go on.

    Never raised by bad input from peers (that is ignored); only by a bug, so that a bug
    stops one node instead of silently corrupting the replicated log.
    """
