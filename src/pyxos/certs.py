"""``pyxos certs``: a development CA, a certificate and key per node, and client certificates.

What it writes into one directory (PEM; keys ECDSA P-256, mode 0600)::

    ca.crt ca.key                 the cluster CA (keep ca.key off the nodes)
    node1.crt node1.key ...       one per node: serverAuth and clientAuth, named
                                  node-N.<cluster_id> (CN and DNS name), plus the node's
                                  peer host and every --host given (client-facing names)
    client.crt client.key         a client certificate (clientAuth only), one per --client

A node certificate is presented on all three ports (clients, peers, admin), so it carries
both the names clients connect to and the id name peers check
(:mod:`pyxos.transport.certnames`). When the directory already holds ``ca.crt`` and
``ca.key`` they sign the new certificates, so re-running adds nodes or renews leaves under
the same CA; ``--new-ca`` makes a fresh CA (for a rotation, into another directory).

Made for development and tests, like ``mkcert``: a production CA keeps its key offline and
is run by whatever issues the organisation's other certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyxos.transport.certnames import node_name

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Client-facing names put in every node certificate when no ``--host`` is given."""

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, cluster_id: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"pyxos cluster {cluster_id}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip().strip("[]")
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*allowed: str) -> x509.KeyUsage:
    """A key usage extension that allows ``allowed`` and nothing else."""
    return x509.KeyUsage(**{name: name in allowed for name in _KEY_USAGES})


def make_ca(
    cluster_id: str = "pyxos",
    *,
    days: int = 3650,
    not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_key()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = _name(f"pyxos {cluster_id} development CA", cluster_id)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    names: Sequence[str] = (),
    *,
    server: bool = True,
    client: bool = True,
    cluster_id: str = "pyxos",
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A leaf certificate for ``common_name`` (also its first DNS name) and ``names``.

    ``not_before``/``not_after`` override the validity (tests make expired certificates).
    """
    key = new_key()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    end = not_after or start + dt.timedelta(days=days)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if not usages:
        raise ValueError("a certificate needs server or client use")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, cluster_id))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage("digital_signature"), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    san = _san([common_name, *names])
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_pair(directory: Path, stem: str, cert: x509.Certificate, key: PrivateKey) -> Path:
    """Write ``stem.crt`` (0644) and ``stem.key`` (0600, written without a window in which
    another user could read it); return the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    crt = directory / f"{stem}.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{stem}.key"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    return crt


def load_ca(directory: Path) -> tuple[x509.Certificate, PrivateKey] | None:
    """The CA in ``directory`` (``ca.crt``, ``ca.key``), or ``None`` when there is none."""
    crt, key_path = directory / "ca.crt", directory / "ca.key"
    if not crt.exists() or not key_path.exists():
        return None
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, PrivateKey):
        raise ValueError(f"{key_path} is not an EC key made by pyxos certs")
    return cert, key


@dataclass(slots=True)
class Written:
    """What :func:`make_dev_certs` wrote, for the command's summary."""

    directory: Path
    ca_reused: bool
    nodes: dict[int, list[str]] = field(default_factory=dict)
    clients: list[str] = field(default_factory=list)


def make_dev_certs(
    directory: Path,
    members: dict[int, str],
    *,
    cluster_id: str = "pyxos",
    hosts: Sequence[str] = DEFAULT_HOSTS,
    clients: Sequence[str] = ("client",),
    days: int = 825,
    new_ca: bool = False,
) -> Written:
    """Write a CA (unless one is there) and a certificate per node and per client.

    ``members`` maps node id to its peer host (``""`` when unknown); each node certificate
    names ``node-N.<cluster_id>``, that host and every one of ``hosts``.
    """
    existing = None if new_ca else load_ca(directory)
    if existing is None:
        ca_cert, ca_key = make_ca(cluster_id)
        write_pair(directory, "ca", ca_cert, ca_key)
    else:
        ca_cert, ca_key = existing
    written = Written(directory, ca_reused=existing is not None)
    for node_id, host in sorted(members.items()):
        names = [n for n in (host, *hosts) if n]
        cert, key = issue(
            ca_cert, ca_key, node_name(node_id, cluster_id), names, cluster_id=cluster_id, days=days
        )
        write_pair(directory, f"node{node_id}", cert, key)
        written.nodes[node_id] = [node_name(node_id, cluster_id), *dict.fromkeys(names)]
    for client_name in clients:
        cert, key = issue(
            ca_cert, ca_key, client_name, (), server=False, cluster_id=cluster_id, days=days
        )
        write_pair(directory, client_name, cert, key)
        written.clients.append(client_name)
    return written


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a node checks about its own certificate at start-up and on reload."""

    peercert: dict[str, object]
    """The names, in the form :meth:`ssl.SSLSocket.getpeercert` gives (for certnames)."""
    not_before: dt.datetime
    not_after: dt.datetime


def certificate_info(path: Path) -> CertificateInfo:
    """Names and validity of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    sans: list[tuple[str, str]] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ext = None
    if ext is not None:
        sans += [("DNS", name) for name in ext.get_values_for_type(x509.DNSName)]
        sans += [("IP Address", str(ip)) for ip in ext.get_values_for_type(x509.IPAddress)]
    peercert: dict[str, object] = {
        "subject": tuple((("commonName", cn),) for cn in cns),
        "subjectAltName": tuple(sans),
    }
    return CertificateInfo(peercert, cert.not_valid_before_utc, cert.not_valid_after_utc)
