"""The blocking client: one socket, one request at a time, retried across the nodes."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import hiredis

from pyxos.client.base import ClientBase, new_client_id, to_bytes
from pyxos.client.discovery import INFO_PAXOS, info_fields, pick_leader
from pyxos.client.errors import ResponseError, gave_up, retry_reason
from pyxos.kv import CommandKind, classify
from pyxos.resp.requests import encode_command

__all__ = ["Client"]


class Client(ClientBase):
    """A blocking client. Not thread-safe: use one per thread."""

    def _open_state(self) -> None:
        self.client_id = new_client_id()
        self._seq = 0
        self._sock: socket.socket | None = None
        self._reader = hiredis.Reader()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, *argv: Any) -> Any:
        """Run one command; writes are exactly-once across retries."""
        args = [to_bytes(a) for a in argv]
        kind = classify(args).kind
        if kind is CommandKind.WRITE:
            self._seq += 1
            args = [b"RID", b"%d" % self.client_id, b"%d" % self._seq, *args]
        unknown = False
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                reply = self._roundtrip(encode_command(args))
            except ConnectionRefusedError as exc:
                last = exc  # never sent: no doubt about the outcome
                self._next_endpoint(attempt)
                continue
            except (OSError, hiredis.ProtocolError) as exc:
                self.close()
                unknown = unknown or kind is CommandKind.WRITE
                last = exc
                self._next_endpoint(attempt)
                continue
            if isinstance(reply, hiredis.ReplyError):
                last, maybe = retry_reason(reply)
                unknown = unknown or maybe
                self._next_endpoint(attempt)
                continue
            return reply
        raise gave_up(unknown, self.attempts, last)

    def _discover(self) -> None:
        """Point at the leader's endpoint, if the nodes agree on one."""
        infos: dict[int, dict[str, str]] = {}
        for i, endpoint in enumerate(self.endpoints):
            try:
                with socket.create_connection(endpoint, timeout=min(self.timeout, 1.0)) as sock:
                    reader = hiredis.Reader()
                    if self.password is not None:
                        sock.sendall(encode_command([b"AUTH", self.password.encode()]))
                    sock.sendall(INFO_PAXOS)
                    replies: list[Any] = []
                    want = 2 if self.password is not None else 1
                    while len(replies) < want:
                        data = sock.recv(65536)
                        if not data:
                            break
                        reader.feed(data)
                        while (reply := reader.gets()) is not False:
                            replies.append(reply)
                    if replies:
                        infos[i] = info_fields(replies[-1])
            except (OSError, hiredis.ProtocolError):
                continue
        leader = pick_leader(infos)
        if leader is not None:
            self._current = leader

    def _next_endpoint(self, attempt: int) -> None:
        self.close()
        delay = self._rotate(attempt)
        if delay:
            time.sleep(delay)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if not self._discovered:
                self._discovered = True
                self._discover()
            sock = socket.create_connection(self.endpoints[self._current], timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._reader = hiredis.Reader()
            if self.password is not None:
                reply = self._roundtrip(encode_command([b"AUTH", self.password.encode()]))
                if isinstance(reply, hiredis.ReplyError):
                    raise ResponseError(str(reply))
        return self._sock

    def _roundtrip(self, request: bytes) -> Any:
        sock = self._connect()
        sock.sendall(request)
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._reader.feed(data)
