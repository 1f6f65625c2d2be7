"""CLIENT and its subcommands, with Redis 7.0's replies and errors.

Connection facts (id, addresses, age, idle time, last command, database, protocol) are this
node's; memory fields that Redis measures in its own allocator (``qbuf-free``, ``tot-mem``...)
are reported as this connection's buffered input, or 0. Client-side caching (``CLIENT
TRACKING ON``) is not offered: it is refused with an error, and everything that only reports
on it answers as Redis does for a connection that is not tracking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pyxos.kv.commands import string2ll
from pyxos.resp.replies import RespSet, SimpleString
from pyxos.server.connection_base import (
    OK,
    SYNTAX,
    ConnectionBase,
    arg_text,
    error,
)

__all__ = ["ClientCommands", "client_line"]

_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")
_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port> | KILL <option> <value> [<option> <value> ...]",
    "    Close connections by ID, ADDR, LADDR, TYPE or USER (SKIPME yes|no).",
    "LIST [TYPE <type>] [ID <id> ...]",
    "    Return information about client connections.",
    "PAUSE <timeout> [WRITE|ALL] / UNPAUSE",
    "    Hold this node's clients (or their writes) for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Accepted for compatibility (pyxos never evicts clients).",
    "HELP",
    "    Print this help.",
]


def _address(pair: object) -> str:
    if isinstance(pair, tuple) and len(pair) >= 2:
        return f"{pair[0]}:{pair[1]}"
    return f"{pair}:0" if pair else "?:0"


def client_line(conn: ConnectionBase) -> bytes:
    """One line of CLIENT LIST / CLIENT INFO, fields in Redis 7.0's order."""
    transport = conn.transport
    peer = transport.get_extra_info("peername") if transport else None
    local = transport.get_extra_info("sockname") if transport else None
    sock = transport.get_extra_info("socket") if transport else None
    fileno = getattr(sock, "fileno", None)
    fd = fileno() if callable(fileno) else -1
    now = conn.loop.time()
    flags = ("x" if conn.multi is not None else "") + ("e" if conn.no_evict else "")
    spec = conn.last_spec
    fields = [
        f"id={conn.id}",
        f"addr={_address(peer)}",
        f"laddr={_address(local)}",
        f"fd={fd}",
        f"name={arg_text(conn.name)}",
        f"age={int(now - conn.created)}",
        f"idle={int(now - conn.last_active)}",
        f"flags={flags or 'N'}",
        f"db={conn.db}",
        "sub=0",
        "psub=0",
        "ssub=0",
        f"multi={-1 if conn.multi is None else len(conn.multi)}",
        f"qbuf={conn.parser.buffered}",
        "qbuf-free=0",
        "argv-mem=0",
        "multi-mem=0",
        "rbs=0",
        "rbp=0",
        "obl=0",
        "oll=0",
        "omem=0",
        "tot-mem=0",
        "events=r",
        f"cmd={spec.name if spec is not None else 'NULL'}",
        f"user={arg_text(conn.user)}",
        "redir=-1",
        f"resp={conn.protocol}",
    ]
    return " ".join(fields).encode("utf-8", "surrogateescape")


class ClientCommands(ConnectionBase):
    """CLIENT, as a mixin of the connection."""

    def c_client(self, args: Sequence[bytes]) -> bytes:
        sub = args[0].lower()
        handler = getattr(self, "_client_" + sub.decode("ascii", "replace").replace("-", "_"))
        reply: bytes = handler(args[1:])
        return reply

    def _client_id(self, args: Sequence[bytes]) -> bytes:
        return b":%d\r\n" % self.id

    def _client_getname(self, args: Sequence[bytes]) -> bytes:
        return self.encode(self.name or None)

    def _client_setname(self, args: Sequence[bytes]) -> bytes:
        name = args[0]
        if any(c < 0x21 or c > 0x7E for c in name):
            return error("ERR Client names cannot contain spaces, newlines or special characters.")
        self.name = name
        return OK

    def _client_info(self, args: Sequence[bytes]) -> bytes:
        return self.encode(client_line(self) + b"\n")

    def _client_list(self, args: Sequence[bytes]) -> bytes:
        conns: Iterable[ConnectionBase] = self.server.connections()
        i = 0
        while i < len(args):
            opt = args[i].lower()
            if opt == b"type" and i + 1 < len(args):
                kind = args[i + 1].lower()
                if kind not in _TYPES:
                    return error(f"ERR Unknown client type '{arg_text(args[i + 1])}'")
                if kind != b"normal":
                    conns = []
                i += 2
            elif opt == b"id" and i + 1 < len(args):
                ids = set()
                for raw in args[i + 1 :]:
                    value = string2ll(raw)
                    if value is None or value <= 0:
                        return error("ERR Invalid client ID")
                    ids.add(value)
                conns = [c for c in conns if c.id in ids]
                i = len(args)
            else:
                return SYNTAX
        return self.encode(b"".join(client_line(c) + b"\n" for c in conns))

    def _client_kill(self, args: Sequence[bytes]) -> bytes:
        conns = list(self.server.connections())
        if len(args) == 1:  # the old form: CLIENT KILL addr:port
            victims = [c for c in conns if _peer(c) == args[0]]
            if not victims:
                return error("ERR No such client")
            victims[0].close_after_reply()
            return OK
        if len(args) % 2:
            return SYNTAX
        skipme = True
        for raw_opt, value in zip(args[::2], args[1::2], strict=True):
            opt = raw_opt.lower()
            if opt == b"id":
                wanted = string2ll(value)
                if wanted is None or wanted <= 0:
                    return error("ERR client-id should be greater than 0")
                conns = [c for c in conns if c.id == wanted]
            elif opt == b"type":
                if value.lower() not in _TYPES:
                    return error(f"ERR Unknown client type '{arg_text(value)}'")
                if value.lower() != b"normal":
                    conns = []
            elif opt == b"user":
                if self.server.kv.acl.get(value) is None:
                    return error(f"ERR No such user '{arg_text(value)}'")
                conns = [c for c in conns if c.user == value]
            elif opt == b"addr":
                conns = [c for c in conns if _peer(c) == value]
            elif opt == b"laddr":
                conns = [c for c in conns if _local(c) == value]
            elif opt == b"skipme":
                if value.lower() not in (b"yes", b"no"):
                    return SYNTAX
                skipme = value.lower() == b"yes"
            else:
                return SYNTAX
        victims = [c for c in conns if not (skipme and c is self)]
        for victim in victims:
            victim.close_after_reply()
        return b":%d\r\n" % len(victims)

    def _client_reply(self, args: Sequence[bytes]) -> bytes:
        mode = args[0].lower()
        if mode == b"on":
            self.reply_off = False
            self.skip_replies = 0
        elif mode == b"off":
            self.reply_off = True
        elif mode == b"skip":
            if not self.reply_off:
                self.skip_replies = 2  # this reply and the next
        else:
            return SYNTAX
        self.quiet = self.reply_off or self.skip_replies > 0
        return OK

    def _client_no_evict(self, args: Sequence[bytes]) -> bytes:
        mode = args[0].lower()
        if mode not in (b"on", b"off"):
            return SYNTAX
        self.no_evict = mode == b"on"
        return OK

    def _client_pause(self, args: Sequence[bytes]) -> bytes:
        timeout = string2ll(args[0])
        if timeout is None:
            return error("ERR timeout is not an integer or out of range")
        if timeout < 0:
            return error("ERR timeout is negative")
        writes_only = False
        if len(args) == 2:
            mode = args[1].lower()
            if mode not in (b"write", b"all"):
                return error("ERR CLIENT PAUSE mode must be WRITE or ALL")
            writes_only = mode == b"write"
        elif len(args) > 2:
            return SYNTAX
        self.server.pause(timeout / 1000, writes_only)
        return OK

    def _client_unpause(self, args: Sequence[bytes]) -> bytes:
        self.server.unpause()
        return OK

    def _client_unblock(self, args: Sequence[bytes]) -> bytes:
        if string2ll(args[0]) is None:
            return error("ERR value is not an integer or out of range")
        if len(args) == 2 and args[1].lower() not in (b"timeout", b"error"):
            return error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        if len(args) > 2:
            return SYNTAX
        return b":0\r\n"  # pyxos has no blocking commands, so no client is ever blocked

    def _client_getredir(self, args: Sequence[bytes]) -> bytes:
        return b":-1\r\n"

    def _client_trackinginfo(self, args: Sequence[bytes]) -> bytes:
        return self.encode({b"flags": RespSet([b"off"]), b"redirect": -1, b"prefixes": []})

    def _client_tracking(self, args: Sequence[bytes]) -> bytes:
        mode = args[0].lower()
        if mode == b"off":
            return OK
        if mode != b"on":
            return SYNTAX
        return error("ERR client-side caching (CLIENT TRACKING) is not supported by pyxos")

    def _client_caching(self, args: Sequence[bytes]) -> bytes:
        return error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with"
            " OPTIN or OPTOUT mode enabled"
        )

    def _client_help(self, args: Sequence[bytes]) -> bytes:
        return self.encode([SimpleString(line) for line in _HELP])


def _peer(conn: ConnectionBase) -> bytes:
    transport = conn.transport
    return _address(transport.get_extra_info("peername") if transport else None).encode()


def _local(conn: ConnectionBase) -> bytes:
    transport = conn.transport
    return _address(transport.get_extra_info("sockname") if transport else None).encode()
