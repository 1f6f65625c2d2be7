"""Mutual TLS on peer links: who may connect, what is refused, and why it is logged.

Certificates are made at test time with trustme (a throw-away CA per test), never read from
the repository.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trustme

from pyxos.core.ballot import Ballot
from pyxos.core.messages import Accepted
from pyxos.transport import Transport, TransportConfig
from pyxos.transport.testing import Inbox, RawPeer, eventually, local_members
from pyxos.transport.tls import TLSConfigError, TLSContexts, TLSFiles, TLSListener

CLUSTER = "tls-test"
SECRET = b"tls-test-secret-0123456789"
BASE = {
    "ping_interval": 0.05,
    "idle_timeout": 1.0,
    "handshake_timeout": 3.0,
    "connect_timeout": 3.0,
    "backoff_initial": 0.01,
    "backoff_max": 0.1,
}

NOW = dt.datetime.now(dt.UTC)


def node(n: int) -> str:
    return f"node-{n}.{CLUSTER}"


class Certs:
    """A throw-away CA and the files of the certificates it issues, under ``tmp``."""

    def __init__(self, tmp: Path, ca: trustme.CA | None = None) -> None:
        self.tmp = tmp
        self.ca = ca or trustme.CA()
        self.ca_file = tmp / f"ca-{id(self.ca)}.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.count = 0

    def files(self, *names: str, **kw: Any) -> TLSFiles:
        self.count += 1
        leaf = self.ca.issue_cert(*names, **kw)
        cert = self.tmp / f"leaf{id(self)}-{self.count}.crt"
        key = self.tmp / f"leaf{id(self)}-{self.count}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return TLSFiles(cert, key, self.ca_file)

    def contexts(self, *names: str, **kw: Any) -> TLSContexts:
        return TLSContexts(self.files(*names, **kw), roles=("peer",))


def config(tls: TLSContexts | None) -> TransportConfig:
    return TransportConfig(tls=tls, **BASE)  # type: ignore[arg-type]


Make = Callable[[int, dict[int, tuple[str, int]], TLSContexts | None], tuple[Transport, Inbox]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    made: list[Transport] = []

    def factory(
        node_id: int, members: dict[int, tuple[str, int]], tls: TLSContexts | None
    ) -> tuple[Transport, Inbox]:
        inbox = Inbox()
        transport = Transport(node_id, CLUSTER, SECRET, members, inbox, config=config(tls))
        made.append(transport)
        return transport, inbox

    yield factory
    for transport in made:
        await transport.close()
        assert transport.stats().handler_errors == 0


def acc(src: int, slot: int) -> Accepted:
    return Accepted(src, Ballot(1, src), slot, slot)


async def started(
    make: Make, tls1: TLSContexts | None, tls2: TLSContexts | None
) -> tuple[Transport, Inbox, Transport, Inbox]:
    members = local_members([1, 2])
    t1, in1 = make(1, members, tls1)
    t2, in2 = make(2, members, tls2)
    await t1.start()
    await t2.start()
    return t1, in1, t2, in2


def rejected(t: Transport, reason: str) -> int:
    return t.stats().rejected_handshakes.get(reason, 0)


async def test_mutual_tls_links_carry_messages_both_ways(make: Make, tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    t1, in1, t2, in2 = await started(make, certs.contexts(node(1)), certs.contexts(node(2)))
    for slot in range(200):
        assert t2.send(1, acc(2, slot))
    assert t1.send(2, acc(1, 9))
    assert [await in1.get() for _ in range(200)] == [acc(2, s) for s in range(200)]
    assert await in2.get() == acc(1, 9)
    conn = t1._listener.connections[2]
    ssl_object = conn.writer.get_extra_info("ssl_object")
    assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
    assert t1.stats().rejected_handshakes == {} and t2.stats().rejected_handshakes == {}


async def test_certificate_of_a_foreign_ca_is_refused(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ours, foreign = Certs(tmp_path), Certs(tmp_path)
    # node 2 trusts our CA but holds a certificate from another one
    bad = foreign.files(node(2))
    tls2 = TLSContexts(TLSFiles(bad.cert_file, bad.key_file, ours.ca_file), roles=("peer",))
    caplog.set_level(logging.WARNING, "pyxos.transport")
    t1, in1, t2, _ = await started(make, ours.contexts(node(1)), tls2)
    t2.send(1, acc(2, 1))
    await eventually(lambda: rejected(t1, "tls") >= 1)
    assert "not signed by the cluster CA" in caplog.text
    # node 2 learns that it was refused: with TLS 1.3, as a connection closed before Welcome
    await eventually(lambda: rejected(t2, "closed") + rejected(t2, "tls") >= 1)
    assert "the listener refused us (our certificate?)" in caplog.text
    assert in1.queue.empty() and 2 not in t1._listener.connections


async def test_listener_with_a_foreign_certificate_is_refused_by_the_dialer(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ours, foreign = Certs(tmp_path), Certs(tmp_path)
    bad = foreign.files(node(2))
    tls2 = TLSContexts(TLSFiles(bad.cert_file, bad.key_file, ours.ca_file), roles=("peer",))
    caplog.set_level(logging.WARNING, "pyxos.transport")
    t1, _, _t2, in2 = await started(make, ours.contexts(node(1)), tls2)
    t1.send(2, acc(1, 1))
    await eventually(lambda: t1.stats().peers[2].rejected_handshakes.get("tls", 0) >= 1)
    assert "rejected outbound handshake" in caplog.text
    assert "not signed by the cluster CA" in caplog.text
    assert in2.queue.empty()


async def test_expired_certificate_is_refused(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = Certs(tmp_path)
    expired = certs.contexts(
        node(2), not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1)
    )
    caplog.set_level(logging.WARNING, "pyxos.transport")
    t1, in1, t2, _ = await started(make, certs.contexts(node(1)), expired)
    t2.send(1, acc(2, 1))
    await eventually(lambda: rejected(t1, "tls") >= 1)
    assert "certificate has expired" in caplog.text
    assert in1.queue.empty()


async def test_node_presenting_another_nodes_certificate_is_refused(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid certificate of node 3, used by a process claiming to be node 2."""
    certs = Certs(tmp_path)
    members = local_members([1, 2, 3])
    t1, in1 = make(1, members, certs.contexts(node(1)))
    impostor, _ = make(2, members, certs.contexts(node(3)))
    caplog.set_level(logging.WARNING, "pyxos.transport")
    await t1.start()
    await impostor.start()
    impostor.send(1, acc(2, 1))  # inbound to node 1: its Hello claims node 2
    t1.send(2, acc(1, 1))  # outbound from node 1: dials node 2, meets node 3's certificate
    await eventually(lambda: rejected(t1, "certificate_mismatch") >= 2)
    assert "names node(s) 3, not node 2" in caplog.text
    assert t1.stats().peers[2].rejected_handshakes["certificate_mismatch"] >= 2
    assert in1.queue.empty()


async def test_client_certificate_cannot_join_as_a_node(make: Make, tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    t1, in1, t2, _ = await started(make, certs.contexts(node(1)), certs.contexts("client"))
    t2.send(1, acc(2, 1))
    await eventually(lambda: rejected(t1, "certificate_mismatch") >= 1)
    assert in1.queue.empty()


async def test_plain_and_tls_ends_refuse_each_other_with_reasons(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = Certs(tmp_path)
    caplog.set_level(logging.WARNING, "pyxos.transport")
    tls1, plain2 = certs.contexts(node(1)), None
    t1, in1, t2, in2 = await started(make, tls1, plain2)
    t2.send(1, acc(2, 1))  # plain dialer -> TLS listener
    t1.send(2, acc(1, 1))  # TLS dialer -> plain listener
    await eventually(lambda: rejected(t1, "tls") >= 1 and rejected(t2, "tls_on_plain_port") >= 1)
    assert "not TLS: a plain-text client" in caplog.text
    assert "TLS ClientHello on the plain-text peer port" in caplog.text
    assert in1.queue.empty() and in2.queue.empty()
    # and a raw plain-text connection cannot even start the HMAC handshake
    raw = await RawPeer.connect(*t1.address)
    raw.send_raw(b"\x00\x00\x00\x05\x02hello")
    await raw.wait_closed_by_peer()
    raw.close()


async def test_reload_re_establishes_links_under_the_new_files(
    make: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rotating to a new CA as a rolling change: bundle both CAs, swap leaves, drop the old."""
    old, new = Certs(tmp_path), Certs(tmp_path)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(old.ca_file.read_bytes() + new.ca_file.read_bytes())
    f1, f2 = old.files(node(1)), old.files(node(2))
    tls1, tls2 = TLSContexts(f1, ("peer",)), TLSContexts(f2, ("peer",))
    t1, in1, t2, in2 = await started(make, tls1, tls2)
    t2.send(1, acc(2, 1))
    t1.send(2, acc(1, 1))
    assert await in1.get() == acc(2, 1)
    assert await in2.get() == acc(1, 1)

    def rewrite(files: TLSFiles, source: TLSFiles, ca: Path) -> None:
        files.cert_file.write_bytes(source.cert_file.read_bytes())
        files.key_file.write_bytes(source.key_file.read_bytes())
        assert files.ca_file is not None
        files.ca_file.write_bytes(ca.read_bytes())

    # step 1: every node trusts both CAs; step 2: node 1 moves to a new-CA certificate
    for files, tls in ((f1, tls1), (f2, tls2)):
        rewrite(files, files, bundle)
        tls.reload()
    rewrite(f1, new.files(node(1)), bundle)
    caplog.set_level(logging.INFO, "pyxos.transport")
    tls1.reload()
    await eventually(lambda: t1.stats().peers[2].closed.get("tls_reload", 0) >= 1)
    t2.send(1, acc(2, 2))
    t1.send(2, acc(1, 2))
    assert await in1.get() == acc(2, 2)
    assert await in2.get() == acc(1, 2)
    # step 3: node 2 drops the old CA; node 1 still holding an old-CA leaf would be refused
    rewrite(f2, new.files(node(2)), new.ca_file)
    tls2.reload()
    t2.send(1, acc(2, 3))
    assert await in1.get() == acc(2, 3)
    assert rejected(t1, "tls") == 0 and rejected(t2, "tls") == 0


async def test_reload_with_a_broken_file_keeps_the_old_contexts(tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    tls = TLSContexts(certs.files(node(1)), ("peer",))
    before = tls.peer_server
    tls.files.key_file.write_text("not a key")
    with pytest.raises(TLSConfigError, match="cannot use certificate"):
        tls.reload()
    assert tls.peer_server is before and tls.reloads == 0


def test_peer_tls_needs_a_ca(tmp_path: Path) -> None:
    files = Certs(tmp_path).files(node(1))
    with pytest.raises(TLSConfigError, match="CA file"):
        TLSContexts(TLSFiles(files.cert_file, files.key_file), ("peer",))
    with pytest.raises(TLSConfigError, match="no such file"):
        TLSContexts(TLSFiles(tmp_path / "missing.crt", files.key_file, files.ca_file))


async def test_handshake_timeout_on_a_silent_tls_connection(make: Make, tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    members = local_members([1, 2])
    t1 = Transport(
        1,
        CLUSTER,
        SECRET,
        members,
        Inbox(),
        config=TransportConfig(tls=certs.contexts(node(1)), **{**BASE, "handshake_timeout": 0.3}),  # type: ignore[arg-type]
    )
    await t1.start()
    try:
        raw = await RawPeer.connect(*t1.address)  # says nothing at all
        await raw.wait_closed_by_peer()
        raw.close()
        await eventually(lambda: rejected(t1, "tls") >= 1)
    finally:
        await t1.close()
    await asyncio.sleep(0)


async def test_reload_closes_inbound_links_the_new_ca_no_longer_trusts(
    make: Make, tmp_path: Path
) -> None:
    """Dropping a CA is in force for links already up: the distrusted peer is cut off."""
    old, new = Certs(tmp_path), Certs(tmp_path)
    f1 = old.files(node(1))
    tls1 = TLSContexts(f1, ("peer",))
    t1, in1, t2, _ = await started(make, tls1, old.contexts(node(2)))
    t2.send(1, acc(2, 1))
    assert await in1.get() == acc(2, 1)
    replacement = new.files(node(1))
    f1.cert_file.write_bytes(replacement.cert_file.read_bytes())
    f1.key_file.write_bytes(replacement.key_file.read_bytes())
    assert f1.ca_file is not None
    f1.ca_file.write_bytes(new.ca_file.read_bytes())
    tls1.reload()
    await eventually(lambda: 2 not in t1._listener.connections)
    await eventually(lambda: rejected(t1, "tls") >= 1)  # node 2 redials and is refused
    assert t1.stats().peers[2].closed["tls_reload"] >= 1


async def test_closing_the_listener_closes_a_socket_whose_upgrade_never_started(
    tmp_path: Path,
) -> None:
    # A connection accepted in the same loop turn as close() gets an upgrade task that is
    # cancelled before its first step, so its own cleanup never runs: the listener must
    # close that socket itself (else it leaks until garbage collection warns).
    ctx = Certs(tmp_path).contexts(node(1))
    caught: list[socket.socket] = []

    class ClosesAtAccept(TLSListener):
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
            super()._spawn(coro)
            if coro.__name__ == "_upgrade":
                caught.append(coro.cr_frame.f_locals["conn"])
                self.close()

    listener = ClosesAtAccept(lambda: ctx.require("peer_server"), asyncio.Protocol, print)
    host, port = await listener.start("127.0.0.1", 0)
    _, writer = await asyncio.open_connection(host, port)
    try:
        await eventually(lambda: bool(caught))
        await listener.wait_closed()
        assert caught[0].fileno() == -1, "the accepted socket was left open"
    finally:
        writer.close()
        for sock in caught:
            sock.close()
