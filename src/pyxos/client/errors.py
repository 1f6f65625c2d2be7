"""What the clients raise, and which error replies are worth trying on another node.

The line that matters to a caller is between a definite outcome (:class:`ResponseError`:
the server refused; :class:`UnavailableError`: no node took the request) and an unknown one
(:class:`UnknownOutcomeError`: a write may have been applied, so only a retry in the same
session is safe).
"""

from __future__ import annotations

import hiredis

__all__ = [
    "RETRYABLE",
    "UNKNOWN_OUTCOME",
    "ClientError",
    "ResponseError",
    "UnavailableError",
    "UnknownOutcomeError",
    "gave_up",
    "retry_reason",
]

RETRYABLE = ("NOLEADER", "TIMEOUT", "NODEFAILED")
"""Error codes after which another node (or the same one later) may take the request."""
UNKNOWN_OUTCOME = ("TIMEOUT",)
"""Error codes after which a write may or may not have been applied."""


class ClientError(Exception):
    """Base class of the client's errors."""


class ResponseError(ClientError):
    """The server answered with an error (a definite outcome: nothing was applied)."""


class UnavailableError(ClientError):
    """No node could take the request; it was definitely not applied."""


class UnknownOutcomeError(ClientError):
    """The request may or may not have been applied; retrying it later is safe."""


def retry_reason(reply: hiredis.ReplyError) -> tuple[ResponseError, bool]:
    """For an error reply worth retrying elsewhere: the error and whether the outcome is
    unknown. Raises :class:`ResponseError` for a definite refusal."""
    text = str(reply)
    code = text.split(" ", 1)[0]
    if code not in RETRYABLE:
        raise ResponseError(text)
    return ResponseError(text), code in UNKNOWN_OUTCOME


def gave_up(unknown: bool, attempts: int, last: Exception | None) -> ClientError:
    if unknown:
        return UnknownOutcomeError(f"outcome unknown after {attempts} attempts: {last}")
    return UnavailableError(f"no node took the request: {last}")
