"""Error replies, worded exactly as Redis 7 words them wherever Redis has the case."""

from __future__ import annotations

from pyxos.resp.replies import ErrorReply

ERR_SYNTAX = ErrorReply("ERR syntax error")
ERR_NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
ERR_NOT_FLOAT = ErrorReply("ERR value is not a valid float")
ERR_OVERFLOW = ErrorReply("ERR increment or decrement would overflow")
ERR_DECR_OVERFLOW = ErrorReply("ERR decrement would overflow")
ERR_TOO_BIG = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
ERR_NO_SUCH_KEY = ErrorReply("ERR no such key")
ERR_DB_RANGE = ErrorReply("ERR DB index is out of range")
ERR_OUT_OF_RANGE = ErrorReply("ERR value is out of range")
ERR_INVALID_CURSOR = ErrorReply("ERR invalid cursor")
ERR_MALFORMED = ErrorReply("ERR malformed replicated request")
ERR_EMPTY = ErrorReply("ERR empty command")
ERR_STALE = ErrorReply("ERR stale request sequence")
ERR_INVALID_SEQ = ErrorReply("ERR invalid request sequence: must be positive with a client id")
ERR_INTERNAL = ErrorReply("ERR internal error while applying the command")
ERR_RAND_RANGE = ErrorReply(
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
)


def expire_time_error(command: str) -> ErrorReply:
    """``ERR invalid expire time in 'set' command`` (Redis's addReplyErrorExpireTime)."""
    return ErrorReply(f"ERR invalid expire time in '{command}' command")
