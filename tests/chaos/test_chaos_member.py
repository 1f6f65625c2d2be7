"""A short chaos run with the ``member`` nemesis: the membership changes under load.

Nodes are removed and added back wiped at new peer ports, replaced by wiped ones, and
leadership is handed over, through the ``PAXOS`` commands, while the workload runs. Longer:
``pyxos chaos --duration 180 --nemesis member`` (see README).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pyxos.chaos.member import SORTS
from pyxos.chaos.runner import ChaosConfig, run_chaos


def test_member_scenario_passes_with_every_sort_of_membership_fault() -> None:
    cfg = ChaosConfig(duration=45, nemesis=("member",), seed=7)
    report = asyncio.run(run_chaos(cfg))
    assert report.passed, report.as_dict() | {"why": report.checker_explanation}
    assert report.linearizable and report.lost_acked_writes == 0
    assert report.acked_unique_writes > 100 and report.ok > 1000
    sorts = Counter(str(f["detail"]).split(":", 1)[0] for f in report.faults)
    assert all(f["kind"] == "member" for f in report.faults)
    assert all(sorts[s] >= 1 for s in SORTS), sorts
    # Every node taken out came back as a voter, at the address the fault names.
    for fault in report.faults:
        if not str(fault["detail"]).startswith("transfer"):
            assert "back at 127.0.0.1:" in str(fault["detail"]), fault
            assert "not a voter" not in str(fault["detail"]), fault
            assert "did not stop" not in str(fault["detail"]), fault
