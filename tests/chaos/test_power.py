"""The power nemesis: power cuts on real processes, each node's data dir on a lazy mount.

A correct build loses no acknowledged write under power cuts, on both engines. A build
that never fsyncs (``--test-bug skip-fsync``) fails the same short run, and passes the
SIGKILL-only nemeses, which is why the power nemesis exists: a killed process leaves its
writes in the page cache, a power cut does not. Each run is 20 seconds.
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from pyxos.chaos import nemesis, power
from pyxos.chaos.runner import ChaosConfig, run_chaos
from pyxos.cli import main

needs_fuse = pytest.mark.skipif(
    power.unavailable_reason() is not None,
    reason=f"power cuts need a lazy mount: {power.unavailable_reason()}",
)


@needs_fuse
@pytest.mark.parametrize("storage", ["sqlite", "lmdb"])
def test_power_cuts_lose_no_acknowledged_write(storage: str) -> None:
    cfg = ChaosConfig(duration=20, nemesis=("power",), seed=4, storage=storage)
    report = asyncio.run(run_chaos(cfg))
    assert report.passed, report.as_dict() | {"why": report.checker_explanation}
    assert report.lazy_fs and report.ok > 500
    assert len(report.faults) >= 3 and all(f["kind"] == "power" for f in report.faults)
    lost = sum(f["counts"]["unsynced_writes"] for f in report.faults)  # type: ignore[index]
    assert lost > 0, "no cut found anything unsynced to throw away"


@needs_fuse
def test_a_build_that_never_fsyncs_fails_under_power_cuts() -> None:
    cfg = ChaosConfig(duration=20, nemesis=("power",), seed=1, test_bug="skip-fsync", pace=0.5)
    report = asyncio.run(run_chaos(cfg))
    assert not report.passed, f"power cuts missed the skip-fsync bug: {report.as_dict()}"
    assert report.lost_acked_writes > 0 or not report.linearizable


def test_the_same_build_passes_sigkill_chaos() -> None:
    """The hole the power nemesis closes: SIGKILL keeps the page cache."""
    cfg = ChaosConfig(
        duration=20, nemesis=("kill", "crash"), seed=1, test_bug="skip-fsync", pace=0.5
    )
    report = asyncio.run(run_chaos(cfg))
    assert report.passed, report.as_dict() | {"why": report.checker_explanation}
    assert not report.lazy_fs and len(report.faults) >= 5


def test_power_is_refused_with_the_reason_where_fuse_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(power, "unavailable_reason", lambda: "needs root (to mount FUSE)")
    assert "power" not in nemesis.available_kinds()
    result = CliRunner().invoke(main, ["chaos", "--duration", "1", "--nemesis", "kill,power"])
    assert result.exit_code == 2
    assert "the power nemesis is not available here: needs root (to mount FUSE)" in result.output
    result = CliRunner().invoke(main, ["chaos", "--duration", "1", "--lazy-fs"])
    assert result.exit_code == 2 and "--lazy-fs is not available here" in result.output
    with pytest.raises(ValueError, match="power nemesis is not available here: needs root"):
        asyncio.run(run_chaos(ChaosConfig(duration=1, nemesis=("power",))))


@needs_fuse
def test_power_is_in_the_default_set_where_fuse_works() -> None:
    assert "power" in nemesis.available_kinds()
    result = CliRunner().invoke(
        main, ["chaos", "--duration", "1", "--nemesis", "power", "--no-lazy-fs"]
    )
    assert result.exit_code == 2 and "the power nemesis needs --lazy-fs" in result.output
