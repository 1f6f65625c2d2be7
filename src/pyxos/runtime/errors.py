"""What a caller of the runtime can be told, sorted by what it may conclude."""

from __future__ import annotations


class PyxosError(Exception):
    """Base class of the errors the runtime and the clients raise."""


class Unavailable(PyxosError):
    """The request was definitely not applied (no leader known, node stopping): retry."""


class UnknownOutcome(PyxosError):
    """The request may or may not have been applied (timed out after it was proposed).

    Retry with the same request id to learn the outcome without applying it twice.
    """


class NodeFailed(PyxosError):
    """The node stopped because it could not persist its state; it serves nothing more."""


class MembershipError(PyxosError):
    """A membership change or leader transfer was refused; the message says why."""
