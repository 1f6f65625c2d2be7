"""Kill one node at a time with SIGKILL during a write load, and report what clients saw.

    .venv/bin/python bench/kill_one.py --kills 20 [--interval 2] [--down 1] [--writers 4]

Prints one JSON object: kills (and how many hit the leader), acknowledged writes, the
longest stretch with no acknowledged write, the write gap after each kill, and the number
of acknowledged writes lost (read back at the end; must be 0).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from pyxos.chaos import kill_loop
from pyxos.launch.local_cluster import LocalCluster, find_base_port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--down", type=float, default=1.0)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pyxos-kill-one-"))
    cluster = LocalCluster(3, find_base_port(3), root, extra_args=["--log-level", "warning"])
    cluster.start()
    try:
        cluster.wait_ready()
        report = kill_loop.run(
            cluster,
            kills=args.kills,
            interval=args.interval,
            down_for=args.down,
            writers=args.writers,
            seed=args.seed,
        )
    finally:
        cluster.close()
    print(json.dumps(report.as_dict()))


if __name__ == "__main__":
    main()
