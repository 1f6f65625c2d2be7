"""A short chaos run with every peer link on mutual TLS and every client on TLS: faults on
encrypted links must leave the history linearizable, with no acknowledged write lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pyxos.chaos.runner import ChaosConfig, run_chaos


def test_scenario_over_tls_stays_linearizable(tmp_path: Path) -> None:
    cfg = ChaosConfig(
        duration=20, nemesis=("kill", "partition"), seed=5, tls=True, out=tmp_path / "run"
    )
    report = asyncio.run(run_chaos(cfg))
    assert report.passed, report.as_dict() | {"why": report.checker_explanation}
    assert report.linearizable and report.lost_acked_writes == 0
    assert len(report.faults) >= 3
    assert report.ok > 500  # every one of them over a TLS client connection
    log = (tmp_path / "run" / "node1.log").read_text()
    assert "serving TLS clients" in log
    assert (tmp_path / "run" / "tls" / "ca.crt").exists()
