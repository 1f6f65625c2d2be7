"""The ``pyxos sim`` output contract."""

import json

import pytest
from click.testing import CliRunner

from pyxos import cli
from pyxos.sim import runner, swarm


def test_sim_json_summary_is_the_last_line() -> None:
    result = CliRunner().invoke(cli.main, ["sim", "--seeds", "3", "--jobs", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    for key in ("seeds", "steps", "violations", "livelocks", "commands_committed", "failed_seeds"):
        assert key in data
    assert data["seeds"] == 3 and data["violations"] == 0 and data["failed_seeds"] == []
    assert data["commands_committed"] > 0


def test_sim_failure_exits_1_and_prints_the_reproducing_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = runner.run_seed

    def flaky(seed: int, nodes: int = 3, scenario: str = "random") -> runner.SeedResult:
        result = real(seed, nodes, scenario)
        if seed == 5:
            result.violation = "injected for the test"
        return result

    monkeypatch.setattr(swarm, "run_seed", flaky)
    args = ["sim", "--seeds", "3", "--start-seed", "4", "--nodes", "3", "--jobs", "1", "--json"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1
    assert "pyxos sim --seeds 1 --start-seed 5 --nodes 3 --scenario random" in result.output
    assert json.loads(result.output.strip().splitlines()[-1])["failed_seeds"] == [5]


def test_sim_rejects_bad_arguments() -> None:
    result = CliRunner().invoke(cli.main, ["sim", "--scenario", "nope"])
    assert result.exit_code == 2
    assert "Invalid value" in result.output
