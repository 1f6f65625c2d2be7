"""``python -m pyxos.check FILE``: the exit status is the verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyxos.check import Event, write_history
from pyxos.check.cli import EXIT_OK, EXIT_UNKNOWN, EXIT_VIOLATION, main


def history(path: Path, read_value: object, writers: int = 1) -> Path:
    events = []
    for p in range(writers):
        events.append(Event(p, "invoke", "set", "k", p + 1, p))
    for p in range(writers):
        events.append(Event(p, "ok", "set", "k", "OK", 1000 + p))
    events.append(Event(99, "invoke", "get", "k", None, 2000))
    events.append(Event(99, "ok", "get", "k", read_value, 2010))
    write_history(events, path)
    return path


def test_linearizable_history_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(history(tmp_path / "h.jsonl", 1))]) == EXIT_OK
    assert capsys.readouterr().out.startswith("OK: 2 operations on 1 keys")


def test_violation_exits_1_and_explains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(history(tmp_path / "h.jsonl", 5))]) == EXIT_VIOLATION
    out = capsys.readouterr().out
    assert out.startswith("VIOLATION")
    assert "key 'k' is not linearizable" in out


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(history(tmp_path / "h.jsonl", 5)), "--json"]) == EXIT_VIOLATION
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "violation"
    (key,) = report["keys"]
    assert key["key"] == "k"
    assert key["violation"]["candidates"][0]["result"] == 5


def test_all_keys_searches_past_the_first_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        event
        for p, key in enumerate(["a", "b", "c"])
        for event in (
            Event(p, "invoke", "get", key, None, 0),
            Event(p, "ok", "get", key, "boo", 10),
        )
    ]
    path = tmp_path / "h.jsonl"
    write_history(events, path)
    assert main([str(path), "--json"]) == EXIT_VIOLATION
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert sorted(k["verdict"] for k in keys) == ["skipped", "skipped", "violation"]
    assert main([str(path), "--json", "--all-keys"]) == EXIT_VIOLATION
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert [k["verdict"] for k in keys] == ["violation"] * 3


def test_timeout_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = history(tmp_path / "h.jsonl", -1, writers=24)
    assert main([str(path), "--timeout", "0.1"]) == EXIT_UNKNOWN
    assert capsys.readouterr().out.startswith("UNKNOWN")


@pytest.mark.parametrize(
    "content", ['{"process": 1}\n', "not json\n", '{"process":1,"type":"ok","f":"get"}\n']
)
def test_malformed_input_exits_2_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text("\n" + content)
    assert main([str(path)]) == EXIT_UNKNOWN
    assert "line 2:" in capsys.readouterr().err
    assert main([str(path), "--json"]) == EXIT_UNKNOWN
    assert json.loads(capsys.readouterr().out)["verdict"] == "error"


def test_missing_file_and_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "absent.jsonl")]) == EXIT_UNKNOWN
    assert main([]) == EXIT_UNKNOWN
    assert main([str(tmp_path), "--timeout", "0"]) == EXIT_UNKNOWN
    assert main(["--help"]) == EXIT_OK
    capsys.readouterr()


def test_runs_as_a_module(tmp_path: Path) -> None:
    path = history(tmp_path / "h.jsonl", 5)
    done = subprocess.run(
        [sys.executable, "-m", "pyxos.check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == EXIT_VIOLATION
    assert "not linearizable" in done.stdout
