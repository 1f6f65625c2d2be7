from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import FAST

from pyxos.launch.local_cluster import LocalCluster, find_base_port


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three real node processes with fast timeouts; logs are printed when a test fails."""
    cluster = LocalCluster(3, find_base_port(3), tmp_path / "cluster", extra_args=list(FAST))
    cluster.start()
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.close()
        for k in cluster.ids:
            text = cluster.log_text(k)
            if "Traceback" in text:
                print(f"--- node {k} log ---\n{text[-5000:]}")


@pytest.fixture
def redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        pytest.skip("redis-cli is not installed (make test installs redis-tools)")
    return path
