"""Real processes whose data dirs are lost or damaged: such a node must never vote again.

The schedule of the first test is the review's second hole: with it, an old build let a
wiped node and a node that had missed every write elect a leader between them, and every
acknowledged key then read as missing.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import redis
from procs import FAST, client, converged, info, leader, wait_until

from pyxos.launch.local_cluster import LocalCluster, find_base_port

QUICK = [*FAST, "--request-timeout", "1"]


def _write_acked(cluster: LocalCluster, nodes: list[int], keys: list[str]) -> None:
    """Write every key through ``nodes`` until each write is acknowledged."""
    for key in keys:

        def acked(key: str = key) -> bool:
            for k in nodes:
                try:
                    return bool(client(cluster, k).set(key, f"v-{key}"))
                except (redis.RedisError, OSError):
                    continue
            return False

        wait_until(acked, what=f"write of {key} acknowledged")


def _standing(cluster: LocalCluster, node: int) -> str:
    return str(info(cluster, node).get("standing"))


@pytest.fixture
def cluster(tmp_path: Path) -> LocalCluster:
    c = LocalCluster(3, find_base_port(3), tmp_path / "c", extra_args=list(QUICK))
    c.start()
    c.wait_ready()
    yield c  # type: ignore[misc]
    c.close()


def test_a_wiped_node_and_a_node_that_missed_every_write_cannot_elect(
    cluster: LocalCluster,
) -> None:
    wait_until(lambda: all(_standing(cluster, k) == "voter" for k in cluster.ids), what="voters")
    leader(cluster)
    cluster.signal(3, signal.SIGSTOP)  # node 3 sees none of the writes
    keys = [f"k{i}" for i in range(50)]
    _write_acked(cluster, [1, 2], keys)
    cluster.kill(1)
    cluster.kill(2)
    shutil.rmtree(cluster.data_dir / "node2")  # node 2's disk is lost
    cluster.start(2)
    cluster.wait_ready(2)
    cluster.signal(3, signal.SIGCONT)

    # Node 3 holds node 2's earlier data dir: node 2 comes back as a learner.
    wait_until(lambda: _standing(cluster, 2) == "learner", what="node 2 a learner")
    reason = info(cluster, 2)["standing_reason"]
    assert "never votes" in reason and "membership change" in reason
    # With one voter of three up, nothing is chosen and nothing reads as missing.
    with pytest.raises(redis.RedisError):
        client(cluster, 3).set("late", "x")
    with pytest.raises(redis.RedisError):
        client(cluster, 3).get("k0")
    assert info(cluster, 3)["role"] != "leader" and info(cluster, 2)["role"] != "leader"

    cluster.start(1)
    cluster.wait_ready(1)
    assert leader(cluster, [1, 3]) in (1, 3)
    for node in (1, 2, 3):
        values = client(cluster, node).mget(keys)
        assert values == [f"v-{k}".encode() for k in keys], f"node {node} lost writes"
    assert len(converged(cluster, [1, 2, 3])) == 1
    assert _standing(cluster, 2) == "learner"
    assert "learner" in cluster.log_text(2)


def test_a_damaged_data_dir_is_moved_aside_and_the_node_rejoins_as_a_learner(
    cluster: LocalCluster,
) -> None:
    wait_until(lambda: all(_standing(cluster, k) == "voter" for k in cluster.ids), what="voters")
    leader(cluster)
    marker = "damage-me-" + "x" * 40
    _write_acked(cluster, [1, 2, 3], ["a", "b"])
    client(cluster, 1).set("marked", marker)
    converged(cluster, [1, 2, 3])
    cluster.stop(2)
    db = cluster.data_dir / "node2" / "sqlite" / "pyxos.db"
    data = bytearray(db.read_bytes())
    at = data.find(marker.encode())
    assert at >= 0
    data[at + 12] ^= 0x01
    db.write_bytes(bytes(data))

    cluster.start(2)
    cluster.wait_ready(2)
    wait_until(lambda: _standing(cluster, 2) == "learner", what="node 2 a learner")
    moved = [p for p in cluster.data_dir.iterdir() if p.name.startswith("node2.corrupt-")]
    assert len(moved) == 1 and (moved[0] / "sqlite" / "pyxos.db").exists()
    log = cluster.log_text(2)
    assert "is damaged" in log and str(db) in log and "checksum" in log
    # The others carry on; the learner catches up and serves reads.
    client(cluster, 1).set("after", "yes")
    assert client(cluster, 2).get("after") == b"yes"
    assert client(cluster, 2).get("marked") == marker.encode()
    assert len(converged(cluster, [1, 2, 3])) == 1
