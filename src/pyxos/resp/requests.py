"""RESP requests: the sans-I/O parser of what clients send, and the encoder clients use.

The parser is sans-I/O (h11 style): the connection handler feeds it whatever bytes ``recv``
returned and gets back the complete commands, each an ``argv`` list of ``bytes``. It accepts
both request forms real Redis accepts, chosen per command by the first byte, exactly as
``processInputBuffer`` in Redis's ``networking.c`` does:

- RESP arrays of bulk strings (``*3\\r\\n$3\\r\\nSET\\r\\n...``), what redis-cli, redis-py and
  redis-benchmark send, many per buffer when pipelining;
- inline commands (``PING\\r\\n``, ``SET k "a b"\\n``), what telnet users and redis-benchmark's
  ``PING_INLINE`` send, split with Redis's ``sdssplitargs`` quoting rules.

Malformed input produces the same ``-ERR Protocol error: ...`` text Redis sends, raised as
:class:`ProtocolError`; Redis answers it and then closes the connection, and so must the
server. Commands completed before the bad bytes are still delivered (on the exception), so
they can run first, as in Redis.

Deliberate differences from Redis, all so that the result never depends on how the byte
stream was split into ``recv`` chunks (Redis only checks some limits while a line is still
incomplete):

- a header line (``*N`` / ``$N``) or an inline command longer than ``max_inline_len`` is
  always an error, even when it arrived complete in one read;
- NUL bytes are ordinary bytes (Redis's ``strchr`` scans stop at them);
- a multibulk count above ``max_args`` is reported as ``invalid multibulk length`` (Redis's
  only bound is ``INT_MAX``).

Like Redis, the two bytes after a bulk payload and the byte after a header's ``\\r`` are
skipped without being checked.

Speed: a pipelined buffer of well-formed commands is parsed by a fast path that splits the
whole buffer on ``\\r\\n`` once and checks each token against tables of canonical headers
(``*3``, ``$16``...). Anything it is not sure about (an inline command, a payload containing
``\\r\\n``, a partial command, a large or odd header) falls back to the general state machine
from that command on, so both paths produce the same result by construction; the tests
check it. A small incomplete command at the end of a buffer is kept as raw bytes rather than
as parser state, so the next buffer starts at a command boundary and can take the fast path.

Measured (CPython 3.11, redis-benchmark-style ``SET key:NNNNNNNNNNNN xxx`` pipelined, fed in
16 KiB chunks): ~1.2M commands/s with the fast path, ~0.4M/s with the state machine alone;
``hiredis.Reader`` does ~5M/s but was not used, because it cannot reproduce Redis's request
rules (it accepts ``+x`` or ``:1`` elements and nested arrays, buffers a declared 10 GB bulk
instead of refusing it, and cannot tell where an inline command starts after arrays).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from pyxos.resp.inline import split_inline
from pyxos.resp.integers import string2ll
from pyxos.resp.replies import CRLF

__all__ = [
    "DEFAULT_MAX_ARGS",
    "DEFAULT_MAX_BULK_LEN",
    "DEFAULT_MAX_INLINE_LEN",
    "ProtocolError",
    "RequestParser",
    "encode_command",
]

DEFAULT_MAX_BULK_LEN = 512 * 1024 * 1024
"""Redis's default ``proto-max-bulk-len``."""
DEFAULT_MAX_INLINE_LEN = 64 * 1024
"""Redis's ``PROTO_INLINE_MAX_SIZE``: bound on inline commands and header lines."""
DEFAULT_MAX_ARGS = 1024 * 1024
"""Bound on the argument count of one command; Redis allows up to ``INT_MAX``."""

_INT_MAX = 2**31 - 1
_UNAUTH_MAX_ARGS = 10  # Redis: "unauthenticated multibulk length"
_UNAUTH_MAX_BULK = 16384  # Redis: "unauthenticated bulk length"

# Fast-path tables: the canonical headers that need no further checks.
_FAST_MAX_ARGS = 1024
_FAST_MAX_BULK = 8192
_REWIND_MAX = 4096


class ProtocolError(Exception):
    """The client sent bytes that are not a valid request; reply and close the connection.

    Attributes:
        message: the text after ``-``, e.g. ``"ERR Protocol error: invalid bulk length"``.
        reply: the complete error line to send before closing.
        commands: commands that were complete before the bad bytes, in order; Redis
            executes these before replying with the error, and the server should too.
    """

    def __init__(self, message: str, commands: list[list[bytes]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reply = b"-" + message.encode("latin-1") + CRLF
        self.commands: list[list[bytes]] = commands if commands is not None else []


def _err(detail: str) -> ProtocolError:
    return ProtocolError("ERR Protocol error: " + detail)


# --- the parser --------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _fast_tables(
    max_args: int, max_bulk: int, max_line: int
) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """``{b"*N": N}`` and ``{b"$N": N}`` for every canonical header the fast path may accept
    without checks under the given limits. Shared between parsers with the same limits."""
    counts = {b"*%d" % i: i for i in range(1, min(max_args, _FAST_MAX_ARGS) + 1)}
    lens = {b"$%d" % i: i for i in range(min(max_bulk, _FAST_MAX_BULK) + 1)}
    counts = {k: v for k, v in counts.items() if len(k) <= max_line}
    lens = {k: v for k, v in lens.items() if len(k) <= max_line}
    return counts, lens


class RequestParser:
    """Incremental parser of client requests (RESP arrays and inline commands).

    Feed it bytes with :meth:`feed`; it returns the commands completed so far. After a
    :class:`ProtocolError` the parser is dead: every later ``feed`` raises the same error,
    since the stream can no longer be trusted to be in sync.

    Args:
        max_bulk_len: largest accepted bulk string (Redis ``proto-max-bulk-len``).
        max_args: largest accepted argument count of one RESP command.
        max_inline_len: longest inline command or ``*``/``$`` header line.
        require_auth: apply Redis's tighter limits for unauthenticated clients (at most 10
            arguments, bulks of at most 16384 bytes); the server clears it after ``AUTH``.
    """

    __slots__ = (
        "_argv",
        "_buf",
        "_bulklen",
        "_error",
        "_fast_counts",
        "_fast_lens",
        "_remaining",
        "_require_auth",
        "fast_path",
        "max_args",
        "max_bulk_len",
        "max_inline_len",
    )

    def __init__(
        self,
        *,
        max_bulk_len: int = DEFAULT_MAX_BULK_LEN,
        max_args: int = DEFAULT_MAX_ARGS,
        max_inline_len: int = DEFAULT_MAX_INLINE_LEN,
        require_auth: bool = False,
    ) -> None:
        if max_bulk_len < 0 or max_args < 1 or max_inline_len < 1:
            raise ValueError("parser limits must be positive")
        self.max_bulk_len = max_bulk_len
        self.max_args = max_args
        self.max_inline_len = max_inline_len
        self.fast_path = True
        """Use the split-based fast path; off only to test that both paths agree."""
        self._buf = bytearray()  # bytes received but not yet consumed
        self._argv: list[bytes] = []  # arguments of the RESP command in progress
        self._remaining = 0  # arguments still missing from it; 0 = at a command boundary
        self._bulklen = -1  # length of the bulk whose header was consumed, or -1
        self._error: ProtocolError | None = None
        self._require_auth = require_auth
        self._fast_counts: dict[bytes, int] = {}
        self._fast_lens: dict[bytes, int] = {}
        self._update_tables()

    @property
    def require_auth(self) -> bool:
        """Whether the unauthenticated-client limits apply (see the class docstring)."""
        return self._require_auth

    @require_auth.setter
    def require_auth(self, value: bool) -> None:
        self._require_auth = value
        self._update_tables()

    def _update_tables(self) -> None:
        max_args, max_bulk = self.max_args, self.max_bulk_len
        if self._require_auth:
            max_args = min(max_args, _UNAUTH_MAX_ARGS)
            max_bulk = min(max_bulk, _UNAUTH_MAX_BULK)
        self._fast_counts, self._fast_lens = _fast_tables(max_args, max_bulk, self.max_inline_len)

    @property
    def error(self) -> ProtocolError | None:
        """The protocol error that killed this parser, if any."""
        return self._error

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete command (for memory accounting)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[bytes]]:
        """Add received bytes; return the commands they completed, in order.

        Empty commands (``*0``, ``*-1``, blank inline lines) are skipped, as Redis does.

        Raises:
            ProtocolError: the stream is malformed. ``exc.commands`` holds the commands that
                were complete before the bad bytes; send ``exc.reply`` after running them,
                then close the connection.
        """
        if self._error is not None:
            raise self._error
        out: list[list[bytes]] = []
        pending = self._buf
        if pending:
            pending += data
            if self._bulklen >= 0 and len(pending) < self._bulklen + 2:
                return out  # still waiting for a large payload: nothing to scan
            buf = bytes(pending)
            pending.clear()
        else:
            buf = data if type(data) is bytes else bytes(data)
        pos = 0
        if self.fast_path and self._remaining == 0 and buf[:1] == b"*":
            pos = self._fast(buf, out)
        try:
            pos = self._slow(buf, pos, out)
        except ProtocolError as exc:
            exc.commands = out
            self._error = exc
            self._buf = bytearray()
            raise
        if pos < len(buf):
            self._buf += memoryview(buf)[pos:]
        return out

    def _fast(self, buf: bytes, out: list[list[bytes]]) -> int:
        """Parse leading well-formed RESP commands; return where the slow path must resume.

        Every emitted command consists only of tokens found in the canonical-header tables
        and payloads whose length matches their header and that are followed by ``\\r\\n``,
        which is exactly when the slow path would produce the same command.
        """
        toks = buf.split(b"\r\n")
        ntok = len(toks) - 1  # the last piece is not terminated by CRLF
        counts = self._fast_counts
        lens = self._fast_lens
        i = 0
        pos = 0
        append = out.append
        while i < ntok:
            head = toks[i]
            count = counts.get(head)
            if count is None:
                break
            j = i + 1
            end = j + 2 * count
            if end > ntok:
                break
            p = pos + len(head) + 2
            argv: list[bytes] = []
            while j < end:
                h = toks[j]
                d = toks[j + 1]
                if lens.get(h, -1) != len(d):
                    break
                argv.append(d)
                p += len(h) + len(d) + 4
                j += 2
            if j != end:
                break
            append(argv)
            i = end
            pos = p
        return pos

    def _slow(self, buf: bytes, pos: int, out: list[list[bytes]]) -> int:
        """The general state machine, a transcription of Redis's ``processInlineBuffer`` and
        ``processMultibulkBuffer``. Returns the offset of the first unconsumed byte and
        leaves the partial-command state in ``self``."""
        n = len(buf)
        find = buf.find
        max_inline = self.max_inline_len
        argv = self._argv
        remaining = self._remaining
        bulklen = self._bulklen
        start = -1  # where the current RESP command began in ``buf``, if it did
        while True:
            if remaining == 0:
                if pos >= n:
                    break
                if buf[pos] != 0x2A:  # not '*': an inline command
                    nl = find(b"\n", pos)
                    if (nl if nl >= 0 else n) - pos > max_inline:
                        raise _err("too big inline request")
                    if nl < 0:
                        break
                    end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
                    args = split_inline(buf[pos:end])
                    if args is None:
                        raise _err("unbalanced quotes in request")
                    pos = nl + 1
                    if args:
                        out.append(args)
                    continue
                cr = find(b"\r", pos)
                if (cr if cr >= 0 else n) - pos > max_inline:
                    raise _err("too big mbulk count string")
                if cr < 0 or cr + 1 >= n:
                    break  # need the whole line plus the byte after '\r'
                count = string2ll(buf[pos + 1 : cr])
                if count is None or count > _INT_MAX or count > self.max_args:
                    raise _err("invalid multibulk length")
                if count > _UNAUTH_MAX_ARGS and self._require_auth:
                    raise _err("unauthenticated multibulk length")
                start = pos
                pos = cr + 2
                if count <= 0:
                    continue
                remaining = count
                argv = []
            while remaining:
                if bulklen < 0:
                    cr = find(b"\r", pos)
                    if (cr if cr >= 0 else n) - pos > max_inline:
                        raise _err("too big bulk count string")
                    if cr < 0 or cr + 1 >= n:
                        break
                    if buf[pos] != 0x24:  # '$'
                        got = chr(buf[pos]) if buf[pos] not in (0x0D, 0x0A) else " "
                        raise _err(f"expected '$', got '{got}'")
                    length = string2ll(buf[pos + 1 : cr])
                    if length is None or length < 0 or length > self.max_bulk_len:
                        raise _err("invalid bulk length")
                    if length > _UNAUTH_MAX_BULK and self._require_auth:
                        raise _err("unauthenticated bulk length")
                    pos = cr + 2
                    bulklen = length
                if n - pos < bulklen + 2:
                    break
                argv.append(buf[pos : pos + bulklen])
                pos += bulklen + 2
                bulklen = -1
                remaining -= 1
            if remaining:
                if start >= 0 and n - start <= _REWIND_MAX:
                    # A small partial command: forget the progress and keep its bytes, so
                    # the next feed starts at a command boundary and can use the fast path.
                    # Bounded, so re-scanning it costs O(_REWIND_MAX) per feed at worst.
                    pos, remaining, bulklen, argv = start, 0, -1, []
                break
            out.append(argv)
            argv = []
        self._argv = argv
        self._remaining = remaining
        self._bulklen = bulklen
        return pos


def encode_command(argv: Iterable[bytes | str | int]) -> bytes:
    """Encode a command as a RESP array of bulk strings, the way clients send it."""
    parts: list[bytes] = []
    count = 0
    for arg in argv:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        count += 1
    return b"*%d\r\n" % count + b"".join(parts)
