"""Which member a certificate names: by id name, by a host only it uses, never ambiguously."""

from __future__ import annotations

from typing import Any

import pytest

from pyxos.transport.certnames import CertNames, certificate_problem, node_name, nodes_named

ONE_HOST = {1: ("127.0.0.1", 7001), 2: ("127.0.0.1", 7002), 3: ("127.0.0.1", 7003)}
SPREAD = {1: ("10.0.0.1", 7000), 2: ("db2.example", 7000), 3: ("2001:db8::3", 7000)}


def cert(cn: str | None = None, *sans: tuple[str, str]) -> dict[str, Any]:
    subject = ((("organizationName", "x"),),) + (((("commonName", cn),),) if cn else ())
    return {"subject": subject, "subjectAltName": sans}


@pytest.mark.parametrize(
    ("peercert", "members", "named"),
    [
        (cert("node-2.c"), ONE_HOST, {2}),
        (cert(None, ("DNS", "NODE-2.C")), ONE_HOST, {2}),  # case-insensitive
        (cert("node-2.other"), ONE_HOST, set()),  # another cluster's name
        (cert(None, ("IP Address", "127.0.0.1")), ONE_HOST, set()),  # shared host: no one
        (cert(None, ("IP Address", "10.0.0.1")), SPREAD, {1}),
        (cert(None, ("DNS", "db2.example")), SPREAD, {2}),
        (cert("db2.example"), SPREAD, {2}),
        (cert(None, ("DNS", "*.example")), SPREAD, set()),  # wildcards name nobody
        (cert(None, ("IP Address", "2001:DB8:0:0:0:0:0:3")), SPREAD, {3}),  # as OpenSSL prints
        (cert(None, ("IP Address", "10.0.0.1"), ("DNS", "db2.example")), SPREAD, {1, 2}),
        (cert("client"), SPREAD, set()),
    ],
)
def test_nodes_named(peercert: dict[str, Any], members: Any, named: set[int]) -> None:
    assert nodes_named(CertNames.of(peercert), members, "c") == named


def test_node_name_is_scoped_by_cluster() -> None:
    assert node_name(3, "Prod") == "node-3.prod"
    assert node_name(3, "prod") != node_name(3, "staging")


def test_certificate_must_name_exactly_the_claimed_node() -> None:
    assert certificate_problem(cert("node-2.c"), 2, ONE_HOST, "c") is None
    assert "names node(s) 3, not node 2" in (
        certificate_problem(cert("node-3.c"), 2, ONE_HOST, "c") or ""
    )
    assert "names no member" in (certificate_problem(cert("client"), 2, ONE_HOST, "c") or "")
    both = cert(None, ("IP Address", "10.0.0.1"), ("DNS", "db2.example"))
    assert "also node(s) 2" in (certificate_problem(both, 1, SPREAD, "c") or "")
    assert certificate_problem({}, 1, SPREAD, "c") == "no verified peer certificate"
    assert certificate_problem(None, 1, SPREAD, "c") == "no verified peer certificate"


def test_garbage_in_a_certificate_dict_does_not_raise() -> None:
    names = CertNames.of(cert(None, ("IP Address", "not-an-ip"), ("URI", "x:y")))
    assert names.ips == () and names.dns == ()
    assert names.describe() == "no names"
