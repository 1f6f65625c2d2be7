"""``--aclfile``: the users a node starts with, and the errors for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxos.cli import main
from pyxos.kv.acl import AclTable
from pyxos.runtime.config import ConfigError
from pyxos.server.acl_catalog import catalog
from pyxos.server.acl_file import load_acl_file

GOOD = b"""# users of the cluster
user app on >app-pw ~app:* +@all -@dangerous

user default on nopass ~* &* +@all
user reader on #ce5ca673d13b36118d54a7cf13aeb0ca012383bf771e713421b4d1fd841f539a -@all +@read ~*
"""


def test_the_users_of_the_file_are_the_base_users(tmp_path: Path) -> None:
    path = tmp_path / "users.acl"
    path.write_bytes(GOOD)
    base = load_acl_file(path)
    assert list(base) == [b"app", b"default", b"reader"]
    table = AclTable()
    table.configure(catalog(), base)
    assert table.authenticate(b"app", b"app-pw")
    reader = table.get(b"reader")
    assert reader is not None and "get" in reader.allowed and "set" not in reader.allowed
    app = table.get(b"app")
    assert app is not None and "flushall" not in app.allowed and "set" in app.allowed
    # Deleting a user of the file is a replicated change over it (a tombstone).
    assert table.deluser([b"app"]) == 1
    assert table.get(b"app") is None and table.changes == {b"app": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"app on nopass\n", ":1: line should start with user keyword"),
        (b"user\n", ":1: line should start with user keyword"),
        (b"user a on\nuser a off\n", ":2: duplicate user 'a' found"),
        (
            b"user a on +nosuch\n",
            ":1: error in user declaration '+nosuch': Unknown command or category name in ACL",
        ),
        (b"user a allkeys ~x\n", "error in user declaration '~x': Adding a pattern after"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "users.acl"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("'", "'")):
        load_acl_file(path)
    result = CliRunner().invoke(
        main, ["serve", "--id", "1", "--data-dir", str(tmp_path / "d"), "--aclfile", str(path)]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the ACL file"):
        load_acl_file(tmp_path / "nope.acl")
