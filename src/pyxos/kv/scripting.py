"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT: Lua scripts replicated as their invocation.

A script runs inside the log entry of its EVAL, on every replica, against the replicated
state: what it reads and writes is the same everywhere because it is deterministic
(:mod:`pyxos.kv.lua_engine`: no clock but the replicated one, a random generator seeded by
the log position, bounded memory and instructions) and because nothing else runs while it
does. The script cache (EVAL and SCRIPT LOAD add to it, SCRIPT FLUSH empties it) is part of
the replicated state and of snapshots, so EVALSHA finds the same scripts on every node.

What a script may call follows Redis: every data command; PING, ECHO, SELECT (for the rest
of the script only) and TIME (the replicated clock); not transactions, scripts or
connection commands. EVAL_RO and scripts whose shebang says ``flags=no-writes`` may not
write. The ``#!lua`` shebang line and its flags are checked as Redis 7.0 checks them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from pyxos.kv.commands import CommandKind, check, string2ll
from pyxos.kv.errors import ERR_NOT_INTEGER
from pyxos.kv.keyspace import NUM_DBS, Keyspace
from pyxos.kv.lua_engine import ScriptError, compile_check, run_script
from pyxos.kv.transactions import select_index
from pyxos.resp.replies import OK, ErrorReply, Reply, SimpleString

__all__ = ["DEFAULT_MAX_INSTRUCTIONS", "DEFAULT_SCRIPT_MEMORY", "ScriptCommands"]

DEFAULT_MAX_INSTRUCTIONS = 10_000_000
"""Lua instructions one script may run (a few tenths of a second): the whole cluster waits
while a script runs, so a runaway one is ended rather than allowed to stall it."""
DEFAULT_SCRIPT_MEMORY = 128 * 1024 * 1024
"""Bytes one script's Lua state may allocate."""

NOSCRIPT = ErrorReply("NOSCRIPT No matching script. Please use EVAL.")
_SCRIPT_FLAGS = {
    b"no-writes",
    b"allow-oom",
    b"allow-stale",
    b"no-cluster",
    b"allow-cross-slot-keys",
}
_IN_SCRIPTS = (b"ping", b"echo", b"select", b"time")
_NOT_IN_SCRIPTS = (b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"script")
_HELP: list[Reply] = [
    SimpleString(line)
    for line in (
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "EXISTS <sha1> [<sha1> ...]",
        "    Whether each script is in the (replicated) script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Empty the script cache on every node.",
        "KILL",
        "    No script is ever running between commands in pyxos.",
        "LOAD <script>",
        "    Add a script to the cache; its SHA1.",
        "HELP",
        "    Print this help.",
    )
]


def _sha(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def shebang_flags(body: bytes) -> tuple[bytes, set[bytes]] | ErrorReply:
    """Redis 7.0's evalExtractShebangFlags: the body to compile (the shebang line becomes a
    comment, so line numbers stay) and the flags, or the error for a bad shebang."""
    if not body.startswith(b"#!"):
        return body, set()
    end = body.find(b"\n")
    line = body if end < 0 else body[:end]
    parts = line.split(b" ")
    if parts[0] != b"#!lua":
        return ErrorReply(
            "ERR Unexpected engine in script shebang: " + line.decode("utf-8", "replace")
        )
    flags: set[bytes] = set()
    for part in parts[1:]:
        if not part:
            continue
        if not part.startswith(b"flags="):
            return ErrorReply("ERR Unknown lua shebang option: " + part.decode("utf-8", "replace"))
        for flag in part[6:].split(b","):
            if flag and flag not in _SCRIPT_FLAGS:
                return ErrorReply(
                    "ERR Unexpected flag in script shebang: " + flag.decode("utf-8", "replace")
                )
            if flag:
                flags.add(flag)
    return b"--" + body[2:], flags


class ScriptCommands(Keyspace):
    """The scripting commands, as a mixin over :class:`~pyxos.kv.keyspace.Keyspace`."""

    _applied: int
    scripts: OrderedDict[bytes, bytes]
    """The replicated script cache: SHA1 (lower-case hex) to body, in load order."""
    max_instructions: int
    script_memory: int

    def execute_value(self, argv: Sequence[bytes]) -> Reply:  # the state machine's
        raise NotImplementedError

    # --- the replicated cache ------------------------------------------------------------------

    def script_records(self) -> list[tuple[bytes, bytes]]:
        """The script cache as ``(sha1, body)`` pairs, in load order."""
        return list(self.scripts.items())

    def load_scripts(self, records: list[tuple[bytes, bytes]]) -> None:
        """Replace the script cache (snapshot restore)."""
        self.scripts = OrderedDict(records)

    @property
    def script_count(self) -> int:
        return len(self.scripts)

    # --- commands --------------------------------------------------------------------------

    def c_eval(self, argv: Sequence[bytes]) -> Reply:
        return self._eval(argv, by_sha=False, read_only=False)

    def c_evalsha(self, argv: Sequence[bytes]) -> Reply:
        return self._eval(argv, by_sha=True, read_only=False)

    def c_eval_ro(self, argv: Sequence[bytes]) -> Reply:
        return self._eval(argv, by_sha=False, read_only=True)

    def c_evalsha_ro(self, argv: Sequence[bytes]) -> Reply:
        return self._eval(argv, by_sha=True, read_only=True)

    def c_script(self, argv: Sequence[bytes]) -> Reply:
        sub = argv[1].lower()
        if sub == b"load":
            return self._load(argv[2])
        if sub == b"exists":
            return [1 if sha.lower() in self.scripts else 0 for sha in argv[2:]]
        if sub == b"flush":
            if len(argv) > 3 or (len(argv) == 3 and argv[2].lower() not in (b"sync", b"async")):
                return ErrorReply("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
            self.scripts.clear()
            return OK
        if sub == b"kill":
            return ErrorReply("NOTBUSY No scripts in execution right now.")
        if sub == b"debug":
            return ErrorReply("ERR SCRIPT DEBUG is not supported: scripts run on every replica")
        return _HELP

    def _load(self, body: bytes) -> Reply:
        parsed = shebang_flags(body)
        if isinstance(parsed, ErrorReply):
            return parsed
        try:
            compile_check(parsed[0])
        except ScriptError as exc:
            return exc.reply
        sha = _sha(body)
        self.scripts.setdefault(sha, body)
        return sha

    def _eval(self, argv: Sequence[bytes], by_sha: bool, read_only: bool) -> Reply:
        numkeys = string2ll(argv[2])
        if numkeys is None:
            return ERR_NOT_INTEGER
        if numkeys > len(argv) - 3:
            return ErrorReply("ERR Number of keys can't be greater than number of args")
        if numkeys < 0:
            return ErrorReply("ERR Number of keys can't be negative")
        if by_sha:
            sha = argv[1].lower()
            body = self.scripts.get(sha) if len(sha) == 40 else None
            if body is None:
                return NOSCRIPT
        else:
            body = argv[1]
            sha = _sha(body)
        parsed = shebang_flags(body)
        if isinstance(parsed, ErrorReply):
            return parsed
        source, flags = parsed
        read_only = read_only or b"no-writes" in flags
        keys, args = list(argv[3 : 3 + numkeys]), list(argv[3 + numkeys :])
        here = self.db_index
        self.random_draws = 0
        try:
            reply = run_script(
                source,
                sha.decode(),
                keys,
                args,
                lambda words: self._script_call(words, read_only),
                seed=self._applied,
                max_memory=self.script_memory,
                max_instructions=self.max_instructions,
            )
        except ScriptError as exc:
            return exc.reply
        finally:
            self.select(here)  # SELECT inside a script does not outlive it
        if not by_sha:
            self.scripts.setdefault(sha, body)
        return reply

    def _script_call(self, argv: list[bytes], read_only: bool) -> tuple[bool, Reply]:
        """One redis.call / redis.pcall: (failed, reply)."""
        spec = check(argv)
        if isinstance(spec, ErrorReply):
            if spec.startswith("ERR unknown"):
                return True, ErrorReply("ERR Unknown Redis command called from script")
            return True, ErrorReply("ERR Wrong number of args calling Redis command from script")
        name = argv[0].lower()
        if name in _NOT_IN_SCRIPTS or (spec.kind is CommandKind.LOCAL and name not in _IN_SCRIPTS):
            return True, ErrorReply("ERR This Redis command is not allowed from script")
        if read_only and spec.kind is CommandKind.WRITE:
            return True, ErrorReply("ERR Write commands are not allowed from read-only scripts.")
        if name == b"ping":
            return False, (argv[1] if len(argv) == 2 else SimpleString("PONG"))
        if name == b"echo":
            return False, argv[1]
        if name == b"time":
            secs, ms = divmod(self.now, 1000)
            return False, [b"%d" % secs, b"%d" % (ms * 1000)]
        if name == b"select":
            index = select_index(argv[1])
            if index is None:
                return True, ERR_NOT_INTEGER
            if not 0 <= index < NUM_DBS:
                return True, ErrorReply("ERR DB index is out of range")
            self.select(index)
            return False, OK
        reply = self.execute_value(argv)
        return isinstance(reply, ErrorReply), reply
