"""Which cluster member a peer's certificate names, and the check that it is the one claimed.

A certificate signed by the cluster CA proves only that its holder was given a certificate;
it must also say *which* node it belongs to, or any node (or any client certificate from
the same CA) could speak as any other. A certificate names node ``N`` of cluster ``C`` when

- its subject common name or one of its DNS subject-alternative names is
  :func:`node_name` ``(N, C)``, i.e. ``node-N.C`` (what ``pyxos certs`` writes); or
- one of its IP or DNS subject-alternative names (or its common name) is the host of
  ``N``'s configured peer address, and no other member is configured on that host (nodes
  sharing one host, as on a test machine, can only be told apart by their id name).

A peer's certificate must name exactly the node it claims to be: none, another node, or
several nodes (a certificate that could pass as two members) is refused. Wildcard DNS names
never name a node. Names compare case-insensitively, IP addresses by value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def node_name(node_id: int, cluster_id: str) -> str:
    """The name by which a certificate identifies node ``node_id`` of ``cluster_id``."""
    return f"node-{node_id}.{cluster_id}".lower()


@dataclass(frozen=True, slots=True)
class CertNames:
    """The identifying names of one certificate, as :meth:`ssl.SSLSocket.getpeercert` gives."""

    common_names: tuple[str, ...]
    dns: tuple[str, ...]
    ips: tuple[IPAddress, ...]

    @classmethod
    def of(cls, peercert: Mapping[str, Any] | None) -> CertNames:
        """Parse the dictionary form of a verified peer certificate (empty when none)."""
        if not peercert:
            return cls((), (), ())
        cns: list[str] = []
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    cns.append(str(value).lower())
        dns: list[str] = []
        ips: list[IPAddress] = []
        for kind, value in peercert.get("subjectAltName", ()):
            if kind == "DNS":
                dns.append(str(value).lower())
            elif kind == "IP Address":
                try:
                    ips.append(_unmap(ipaddress.ip_address(str(value).strip())))
                except ValueError:
                    continue
        return cls(tuple(cns), tuple(dns), tuple(ips))

    def describe(self) -> str:
        """A short human description for log lines."""
        parts = [f"CN={cn}" for cn in self.common_names]
        parts += [f"DNS:{d}" for d in self.dns] + [f"IP:{ip}" for ip in self.ips]
        return ", ".join(parts) or "no names"

    def _has_name(self, name: str) -> bool:
        name = name.lower()
        return name in self.common_names or name in self.dns

    def _has_host(self, host: str) -> bool:
        ip = _parse_ip(host)
        if ip is not None:
            return ip in self.ips or self._has_name(str(ip))
        return not host.startswith("*") and self._has_name(host)


def _parse_ip(host: str) -> IPAddress | None:
    try:
        return _unmap(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def _unmap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _host_key(host: str) -> str:
    ip = _parse_ip(host)
    return str(ip) if ip is not None else host.lower()


def nodes_named(
    names: CertNames, members: Mapping[int, tuple[str, int]], cluster_id: str
) -> set[int]:
    """Every member that a certificate with ``names`` names (see the module docstring)."""
    hosts: dict[str, int] = {}
    for host, _port in members.values():
        key = _host_key(host)
        hosts[key] = hosts.get(key, 0) + 1
    named: set[int] = set()
    for node_id, (host, _port) in members.items():
        if names._has_name(node_name(node_id, cluster_id)) or (
            hosts[_host_key(host)] == 1 and names._has_host(host)
        ):
            named.add(node_id)
    return named


def certificate_problem(
    peercert: Mapping[str, Any] | None,
    claimed: int,
    members: Mapping[int, tuple[str, int]],
    cluster_id: str,
) -> str | None:
    """Why ``peercert`` may not speak as node ``claimed``, or ``None`` when it may."""
    names = CertNames.of(peercert)
    if not peercert:
        return "no verified peer certificate"
    named = nodes_named(names, members, cluster_id)
    if named == {claimed}:
        return None
    want = node_name(claimed, cluster_id)
    if not named:
        return f"certificate names no member ({names.describe()}); node {claimed} needs {want}"
    others = ", ".join(str(n) for n in sorted(named - {claimed}))
    if claimed in named:
        return f"certificate names node {claimed} but also node(s) {others} ({names.describe()})"
    return f"certificate names node(s) {others}, not node {claimed} ({names.describe()})"
