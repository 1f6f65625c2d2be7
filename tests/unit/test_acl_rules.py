"""The replicated user table without a server: rules, stored form, snapshots, the log."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyxos.kv import KVStateMachine, encode_request
from pyxos.kv.acl import AclTable, default_rules
from pyxos.kv.acl_describe import describe, stored_form
from pyxos.kv.acl_rules import hash_password, user_from_rules
from pyxos.server.acl_catalog import catalog, key_finder
from pyxos.server.acl_check import permissions

RULES = [
    b"on", b"off", b"nopass", b"resetpass", b">a", b">b", b"<a", b"reset", b"allkeys",
    b"resetkeys", b"~foo*", b"%R~bar*", b"%W~baz*", b"&chan", b"allchannels",
    b"resetchannels", b"+@all", b"-@all", b"+@string", b"-@string", b"+@read", b"-@write",
    b"+@dangerous", b"-@dangerous", b"+get", b"-get", b"+config", b"-config", b"+config|get",
    b"-config|set", b"+select|0", b"+select|1", b"-select", b"+client|id", b"-@connection",
    b"sanitize-payload", b"skip-sanitize-payload",
]  # fmt: skip


def machine() -> KVStateMachine:
    return KVStateMachine(acl=AclTable(catalog()))


def acl(sm: KVStateMachine, *words: bytes) -> bytes:
    return sm.apply(encode_request([b"acl", *words]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(RULES), max_size=12))
def test_the_stored_form_recreates_the_same_user(rules: list[bytes]) -> None:
    cat = catalog()
    table = AclTable(cat)
    if table.setuser(b"u", rules) != table.setuser(b"u", []):
        return  # a rule that cannot apply (removing an absent password): nothing stored
    user = table.get(b"u")
    assert user is not None
    again = user_from_rules(stored_form(user).split(), cat)
    assert again.allowed == user.allowed
    assert again.firstargs == user.firstargs
    assert (again.passwords, again.patterns, again.channels) == (
        user.passwords,
        user.patterns,
        user.channels,
    )
    assert describe(again, cat) == describe(user, cat)
    # The description ACL LIST prints gives the same permissions as well.
    assert user_from_rules(describe(user, cat).split(), cat).allowed == user.allowed


def test_a_failing_rule_changes_nothing() -> None:
    sm = machine()
    assert acl(sm, b"setuser", b"u", b"on", b"+get") == b"+OK\r\n"
    before = sm.acl.changes[b"u"]
    reply = acl(sm, b"setuser", b"u", b"off", b"+set", b"+nosuch")
    assert reply.startswith(b"-ERR Error in ACL SETUSER modifier '+nosuch'")
    assert sm.acl.changes[b"u"] == before
    user = sm.acl.get(b"u")
    assert user is not None and user.enabled and "set" not in user.allowed


def test_users_are_in_the_snapshot_and_the_digest() -> None:
    sm = machine()
    acl(sm, b"setuser", b"alice", b"on", b"#" + hash_password(b"pw").encode(), b"~k*", b"+get")
    acl(sm, b"setuser", b"bob", b"on", b"nopass", b"+@all")
    acl(sm, b"deluser", b"bob")
    other = machine()
    assert other.digest() != sm.digest()
    other.restore(sm.snapshot())
    assert other.digest() == sm.digest()
    assert other.acl.names() == [b"alice", b"default"]
    assert other.acl.authenticate(b"alice", b"pw")
    assert not other.acl.authenticate(b"alice", b"wrong")
    assert not other.acl.authenticate(b"bob", b"")


def test_a_snapshot_restored_before_the_catalog_is_read_with_it() -> None:
    sm = machine()
    acl(sm, b"setuser", b"alice", b"on", b"nopass", b"-@all", b"+@string")
    late = KVStateMachine()  # as in a node: the snapshot is restored before the server starts
    late.restore(sm.snapshot())
    late.acl.configure(catalog(), {b"default": default_rules(None)})
    user = late.acl.get(b"alice")
    assert user is not None and {"get", "set", "append"} <= user.allowed
    assert "del" not in user.allowed


def test_deleting_a_user_tells_the_listeners() -> None:
    sm = machine()
    seen: list[frozenset[bytes]] = []
    sm.acl.listeners.append(seen.append)
    acl(sm, b"setuser", b"u", b"on")
    assert acl(sm, b"deluser", b"u", b"nobody") == b":1\r\n"
    assert seen == [frozenset(), frozenset({b"u"})]
    restored = machine()
    acl(restored, b"setuser", b"v", b"on")
    restored.acl.listeners.append(seen.append)
    restored.restore(machine().snapshot())  # v is not in that snapshot
    assert seen[-1] == frozenset({b"v"})


def test_acl_cannot_be_called_from_a_script() -> None:
    sm = machine()
    script = b"return redis.call('acl', 'setuser', 'x', 'on')"
    reply = sm.apply(encode_request([b"eval", script, b"0"]))
    assert reply.startswith(b"-ERR This Redis command is not allowed from script")
    assert sm.acl.get(b"x") is None


def test_the_default_user_follows_the_password_of_the_node() -> None:
    table = AclTable(catalog())
    table.configure(catalog(), {b"default": default_rules(b"s3cret")})
    assert table.default_requires_auth()
    assert table.authenticate(b"default", b"s3cret")
    assert not table.authenticate(b"default", b"other")
    open_table = AclTable(catalog())
    assert not open_table.default_requires_auth()


def test_an_unrestricted_user_costs_no_check() -> None:
    table = AclTable(catalog())
    table.setuser(b"all", [b"on", b"nopass", b"+@all", b"~*"])
    table.setuser(b"some", [b"on", b"nopass", b"+@all", b"~a*"])
    assert permissions(table, b"default") is None
    assert permissions(table, b"all") is None
    some = permissions(table, b"some")
    assert some is not None
    assert some.check("get", [b"get", b"abc"]) is None
    assert some.check("get", [b"get", b"xyz"]) is not None


def test_keys_are_found_by_the_key_specs() -> None:
    mset = key_finder("mset")
    assert mset is not None and mset([b"mset", b"a", b"1", b"b", b"2"]) == [(1, 2), (3, 2)]
    evals = key_finder("eval")
    assert evals is not None
    assert [p for p, _ in evals([b"eval", b"s", b"2", b"k1", b"k2", b"arg"])] == [3, 4]
    assert evals([b"eval", b"s", b"0", b"arg"]) == []
    assert key_finder("ping") is None


def test_a_restricted_user_may_not_run_scripts() -> None:
    table = AclTable(catalog())
    table.setuser(b"s", [b"on", b"nopass", b"-@all", b"+@scripting", b"+get", b"~k*"])
    perms = permissions(table, b"s")
    assert perms is not None
    eval_argv = [b"eval", b"return redis.call('flushall')", b"0"]
    assert perms.dryrun("eval", eval_argv) is None  # what Redis's rules say
    denied = perms.check("eval", eval_argv)
    assert denied is not None and denied.startswith(b"-NOPERM pyxos runs scripts only")
    assert perms.check("get", [b"get", b"k1"]) is None
