"""Mutual authentication of a new peer connection: HMAC-SHA256 challenge-response.

Every connection starts with three frames, in both directions authenticated by a secret
shared by all members of the cluster::

    dialer   -> listener   Hello   {version, cluster_id, node_id=D, nonce_d}
    listener -> dialer     Welcome {version, cluster_id, node_id=L, nonce_l, mac_l}
    dialer   -> listener   Proof   {mac_d}

    mac_x = HMAC-SHA256(secret, msgpack(["pyxos-transport", role_x, version, cluster_id,
                                         D, L, nonce_d, nonce_l]))

Each side picks a fresh 32-byte random nonce, so a proof is bound to this one connection and
cannot be replayed on another; the role string ("listener" / "dialer") keeps a proof from
being reflected back to its author; both node ids and the cluster id are in the MAC, so a
proof made for one pair of nodes or one cluster is worthless for another. Proofs are compared
with :func:`hmac.compare_digest` (constant time). The listener checks the cheap things first
(version, cluster id, membership, not its own id, source address) and rejects before it
spends a MAC or reveals its nonce.

Why HMAC, and where TLS comes in: the HMAC handshake is simple to configure (one shared
secret, no certificates) and needs nothing beyond the standard library, but it
authenticates only the connection set-up: the traffic afterwards is neither encrypted nor
integrity-protected, so an attacker on the path can read it or hijack an established TCP
connection. With ``--tls-cluster yes`` (:attr:`TransportConfig.tls`) every link is mutual
TLS first, and this handshake runs inside it: the dialer checks, before it says anything,
that the listener's certificate names the node it dialled, and the listener checks that
the dialer's certificate names the node its Hello claims (:mod:`pyxos.transport.certnames`);
the version, cluster id, membership and MAC checks stay as they are.

The address check: when the configured host of the claimed node id is a literal IP that is
neither loopback nor a wildcard, the connection's source address must equal it. With a host
name, loopback or wildcard address nothing useful can be compared (NAT, several local
addresses), so the MAC alone decides. A node with several addresses must dial from the one it
is configured with.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from typing import Final, TypeVar

from msgspec import msgpack as _msgpack

from pyxos.transport.certnames import certificate_problem
from pyxos.transport.framing import (
    KIND_CONTROL,
    PROTOCOL_VERSION,
    ConnectionClosed,
    Control,
    FrameError,
    FrameReader,
    Hello,
    Proof,
    Welcome,
    control_frame,
    decode_control,
)
from pyxos.transport.tls import describe_tls_failure, looks_like_tls

NONCE_SIZE: Final = 32

_C = TypeVar("_C", Hello, Welcome, Proof)


class RejectReason(StrEnum):
    """Why a handshake failed; the values are stable identifiers for counters and logs."""

    WRONG_VERSION = "wrong_version"
    WRONG_CLUSTER = "wrong_cluster"
    BAD_HMAC = "bad_hmac"
    NOT_MEMBER = "not_member"
    OWN_ID = "own_id"
    ADDRESS_MISMATCH = "address_mismatch"
    UNEXPECTED_PEER = "unexpected_peer"
    """Dialer side: the listener is a member, but not the node we dialled."""
    MALFORMED = "malformed"
    """Bad framing, an undecodable frame, or a frame of the wrong kind."""
    CLOSED = "closed"
    """The other side closed (or reset) the connection during the handshake."""
    TIMEOUT = "timeout"
    TLS = "tls"
    """The TLS handshake failed: a foreign CA, an expired certificate, plain text on a TLS
    port, or the other side refused our certificate."""
    TLS_ON_PLAIN_PORT = "tls_on_plain_port"
    """A TLS ClientHello on a plain-text peer port: TLS is on at the other end only."""
    CERTIFICATE_MISMATCH = "certificate_mismatch"
    """The peer's certificate is valid but does not name the node it claims to be."""


class HandshakeError(Exception):
    """A rejected handshake. ``peer_id`` is the id the other side claimed, if it got that far."""

    def __init__(self, reason: RejectReason, detail: str, peer_id: int | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.peer_id = peer_id


@dataclass(frozen=True, slots=True)
class Identity:
    """What one node needs to run handshakes: who it is, its cluster, secret and members."""

    node_id: int
    cluster_id: str
    secret: bytes
    members: Mapping[int, tuple[str, int]]
    require_cert: bool = False
    """The connection is TLS and the peer's certificate must name the node it claims."""


def new_nonce() -> bytes:
    """A fresh random challenge (from the OS CSPRNG, never from a seeded RNG)."""
    return secrets.token_bytes(NONCE_SIZE)


def compute_mac(
    secret: bytes,
    role: str,
    *,
    cluster_id: str,
    dialer_id: int,
    listener_id: int,
    dialer_nonce: bytes,
    listener_nonce: bytes,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """The proof ``role`` ("dialer" or "listener") sends; see the module docstring."""
    transcript = _msgpack.encode(
        [
            "pyxos-transport",
            role,
            version,
            cluster_id,
            dialer_id,
            listener_id,
            dialer_nonce,
            listener_nonce,
        ]
    )
    return hmac.new(secret, transcript, sha256).digest()


def _mac(me: Identity, role: str, dialer: int, listener: int, n_d: bytes, n_l: bytes) -> bytes:
    return compute_mac(
        me.secret,
        role,
        cluster_id=me.cluster_id,
        dialer_id=dialer,
        listener_id=listener,
        dialer_nonce=n_d,
        listener_nonce=n_l,
    )


def address_allowed(configured_host: str, peer_ip: str | None) -> bool:
    """Whether a connection from ``peer_ip`` may claim a node configured at ``configured_host``.

    Only a literal, non-loopback, non-wildcard configured IP is enforced; see the module
    docstring for why.
    """
    try:
        configured = ipaddress.ip_address(configured_host)
    except ValueError:
        return True  # a host name: resolving it here would be slow and unreliable
    if configured.is_loopback or configured.is_unspecified:
        return True
    if peer_ip is None:
        return False
    try:
        peer = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    return _unmap(peer) == _unmap(configured)


def _unmap(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def _read_control(reader: FrameReader, expected: type[_C], peer_id: int | None) -> _C:
    try:
        frame = await reader.read_frame()
    except FrameError as exc:
        raise HandshakeError(RejectReason.MALFORMED, str(exc), peer_id) from exc
    except (ConnectionClosed, ConnectionError) as exc:
        raise HandshakeError(RejectReason.CLOSED, "connection closed", peer_id) from exc
    except ssl.SSLError as exc:  # e.g. the listener refused our certificate (TLS 1.3)
        raise HandshakeError(RejectReason.TLS, describe_tls_failure(exc), peer_id) from exc
    if frame[0] != KIND_CONTROL:
        raise HandshakeError(RejectReason.MALFORMED, f"frame kind {frame[0]:#x}", peer_id)
    try:
        control: Control = decode_control(frame[1:])
    except FrameError as exc:
        raise HandshakeError(RejectReason.MALFORMED, str(exc), peer_id) from exc
    if not isinstance(control, expected):
        raise HandshakeError(
            RejectReason.MALFORMED,
            f"expected {expected.__name__}, got {type(control).__name__}",
            peer_id,
        )
    return control


async def _send(writer: asyncio.StreamWriter, control: Control, peer_id: int | None) -> None:
    try:
        writer.write(control_frame(control))
        await writer.drain()
    except ConnectionError as exc:
        raise HandshakeError(RejectReason.CLOSED, f"write failed: {exc}", peer_id) from exc
    except ssl.SSLError as exc:
        raise HandshakeError(RejectReason.TLS, describe_tls_failure(exc), peer_id) from exc


def _check_certificate(writer: asyncio.StreamWriter, me: Identity, peer_id: int) -> None:
    if not me.require_cert:
        return
    problem = certificate_problem(
        writer.get_extra_info("peercert"), peer_id, me.members, me.cluster_id
    )
    if problem is not None:
        raise HandshakeError(RejectReason.CERTIFICATE_MISMATCH, problem, peer_id)


def _check_common(me: Identity, version: int, cluster_id: str, peer_id: int) -> None:
    if version != PROTOCOL_VERSION:
        raise HandshakeError(
            RejectReason.WRONG_VERSION, f"version {version}, want {PROTOCOL_VERSION}", peer_id
        )
    if cluster_id != me.cluster_id:
        raise HandshakeError(
            RejectReason.WRONG_CLUSTER, f"cluster {cluster_id!r}, want {me.cluster_id!r}", peer_id
        )


async def dial(
    reader: FrameReader, writer: asyncio.StreamWriter, me: Identity, peer_id: int | None
) -> int:
    """Run the dialer's half of the handshake with ``peer_id``; raise :class:`HandshakeError`.

    Returns the listener's node id. ``peer_id=None`` accepts whichever member answers: a
    node started with ``--join`` knows its peers' addresses, not their ids (the proofs
    still show that both ends hold the cluster secret, and over TLS the CA vouches for the
    certificate). The caller bounds it with a timeout. Over TLS the listener's certificate
    is checked first, so nothing is sent to a listener that is not the node dialled.
    """
    if peer_id is not None:
        _check_certificate(writer, me, peer_id)
    nonce_d = new_nonce()
    await _send(writer, Hello(PROTOCOL_VERSION, me.cluster_id, me.node_id, nonce_d), peer_id)
    try:
        welcome = await _read_control(reader, Welcome, peer_id)
    except HandshakeError as exc:
        if exc.reason is RejectReason.CLOSED and me.require_cert:
            # TLS 1.3 verifies the dialer's certificate after the dialer's side of the TLS
            # handshake is done; a refusal shows here as a closed connection.
            raise HandshakeError(
                RejectReason.CLOSED,
                "closed before the Welcome: the listener refused us (our certificate?)",
                peer_id,
            ) from exc
        raise
    if peer_id is None:
        peer_id = welcome.node_id
        if peer_id == me.node_id:
            raise HandshakeError(RejectReason.OWN_ID, f"listener claims our own id {peer_id}")
    _check_common(me, welcome.version, welcome.cluster_id, peer_id)
    if welcome.node_id != peer_id:
        raise HandshakeError(
            RejectReason.UNEXPECTED_PEER, f"dialled node {peer_id}, got {welcome.node_id}", peer_id
        )
    if len(welcome.nonce) != NONCE_SIZE:
        raise HandshakeError(RejectReason.MALFORMED, "bad nonce length", peer_id)
    want = _mac(me, "listener", me.node_id, peer_id, nonce_d, welcome.nonce)
    if not hmac.compare_digest(want, welcome.mac):
        raise HandshakeError(RejectReason.BAD_HMAC, "listener proof does not verify", peer_id)
    mac_d = _mac(me, "dialer", me.node_id, peer_id, nonce_d, welcome.nonce)
    await _send(writer, Proof(mac_d), peer_id)
    return peer_id


async def accept(
    reader: FrameReader, writer: asyncio.StreamWriter, me: Identity, peer_ip: str | None
) -> int:
    """Run the listener's half of the handshake; return the authenticated peer's node id.

    Raises :class:`HandshakeError`; the caller bounds it with a timeout.
    """
    try:
        hello = await _read_control(reader, Hello, None)
    except HandshakeError as exc:
        if exc.reason is RejectReason.MALFORMED and looks_like_tls(reader.buffered):
            raise HandshakeError(
                RejectReason.TLS_ON_PLAIN_PORT,
                "a TLS ClientHello on the plain-text peer port: is --tls-cluster on at "
                "one end only?",
            ) from exc
        raise
    peer_id = hello.node_id
    _check_common(me, hello.version, hello.cluster_id, peer_id)
    if peer_id == me.node_id:
        raise HandshakeError(RejectReason.OWN_ID, f"peer claims our own id {peer_id}", peer_id)
    if peer_id not in me.members:
        raise HandshakeError(RejectReason.NOT_MEMBER, f"node {peer_id} is not a member", peer_id)
    host = me.members[peer_id][0]
    if not address_allowed(host, peer_ip):
        raise HandshakeError(
            RejectReason.ADDRESS_MISMATCH,
            f"node {peer_id} is configured at {host}, connection from {peer_ip}",
            peer_id,
        )
    _check_certificate(writer, me, peer_id)
    if len(hello.nonce) != NONCE_SIZE:
        raise HandshakeError(RejectReason.MALFORMED, "bad nonce length", peer_id)
    nonce_l = new_nonce()
    mac_l = _mac(me, "listener", peer_id, me.node_id, hello.nonce, nonce_l)
    await _send(
        writer, Welcome(PROTOCOL_VERSION, me.cluster_id, me.node_id, nonce_l, mac_l), peer_id
    )
    proof = await _read_control(reader, Proof, peer_id)
    want = _mac(me, "dialer", peer_id, me.node_id, hello.nonce, nonce_l)
    if not hmac.compare_digest(want, proof.mac):
        raise HandshakeError(RejectReason.BAD_HMAC, "dialer proof does not verify", peer_id)
    return peer_id
