"""A short chaos run with the ``member`` nemesis: the membership changes under load.

Nodes are removed and added back wiped at new peer ports, replaced by wiped ones, and
leadership is handed over, through the ``PAXOS`` commands, while the workload runs. Longer:
``pyxos chaos --duration 180 --nemesis member`` (see README).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import redis

from pyxos.chaos.member import SORTS, MemberFaults, members
from pyxos.chaos.nemesis import current_leader
from pyxos.chaos.proxy import LinkProxies
from pyxos.chaos.runner import NODE_ARGS, ChaosConfig, run_chaos
from pyxos.launch.local_cluster import LocalCluster, find_base_port


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


def test_a_removal_asked_right_after_the_leader_dies_takes_effect(tmp_path: Path) -> None:
    """The request goes to the dead leader first; the asker sends it again to the next."""
    cluster = LocalCluster(3, find_base_port(3), tmp_path, extra_args=list(NODE_ARGS))
    try:
        cluster.start()
        cluster.wait_ready()
        faults = MemberFaults(cluster, LinkProxies(), random.Random(0))
        assert faults._until(lambda: current_leader(cluster) is not None, 20)
        dead = current_leader(cluster)
        assert dead is not None
        cluster.kill(dead)
        asked = next(k for k in cluster.ids if k != dead)
        conn = redis.Redis(port=cluster.client_port(asked), socket_timeout=40)
        conn.execute_command("PAXOS", "REMOVE", str(dead))
        assert dead not in members(cluster, asked)
    finally:
        cluster.close()
