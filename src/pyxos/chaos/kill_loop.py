"""The "randomly kill one process" experiment, with numbers.

Writers keep storing unique keys through every node (moving to another node when one
fails, retrying the same key: ``SET`` of the same value is idempotent). Meanwhile one node
at a time, sometimes the leader, is killed with SIGKILL and restarted. At the end every
acknowledged key is read back. The report says how long clients could not write (the
longest gap between two acknowledgements, and the gap after each kill) and how many
acknowledged writes were lost, which must be zero.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import redis

from pyxos.chaos.nemesis import current_leader
from pyxos.launch.local_cluster import LocalCluster


@dataclass(slots=True)
class KillReport:
    kills: int = 0
    leader_kills: int = 0
    acked: int = 0
    errors: int = 0
    lost: int = 0
    longest_gap_s: float = 0.0
    gaps_after_kill_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        gaps = sorted(self.gaps_after_kill_s)
        return {
            "kills": self.kills,
            "leader_kills": self.leader_kills,
            "acked_writes": self.acked,
            "client_errors": self.errors,
            "lost_acked_writes": self.lost,
            "longest_write_gap_s": round(self.longest_gap_s, 3),
            "median_gap_after_kill_s": round(gaps[len(gaps) // 2], 3) if gaps else 0.0,
            "max_gap_after_kill_s": round(gaps[-1], 3) if gaps else 0.0,
            "duration_s": round(self.duration_s, 1),
            "writes_per_s": round(self.acked / self.duration_s) if self.duration_s else 0,
        }


def run(
    cluster: LocalCluster,
    *,
    kills: int = 5,
    interval: float = 1.5,
    down_for: float = 0.5,
    writers: int = 4,
    seed: int = 0,
) -> KillReport:
    """Kill ``kills`` times, one node at a time, while ``writers`` threads write."""
    rng = random.Random(seed)
    report = KillReport()
    acked: dict[str, bytes] = {}
    ack_times: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        node = 1 + w % cluster.nodes
        conn = redis.Redis(port=cluster.client_port(node), socket_timeout=2)
        i = 0
        while not stop.is_set():
            key, value = f"w{w}-{i}", f"v{w}-{i}".encode()
            try:
                conn.set(key, value)
            except (redis.RedisError, OSError):
                with lock:
                    report.errors += 1
                node = 1 + node % cluster.nodes  # try the next node, same key
                conn = redis.Redis(port=cluster.client_port(node), socket_timeout=2)
                stop.wait(0.01)
                continue
            with lock:
                acked[key] = value
                ack_times.append(time.monotonic())
            i += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    kill_times: list[float] = []
    try:
        for _ in range(kills):
            stop.wait(interval)
            lid = current_leader(cluster)
            victim = lid if (lid is not None and rng.random() < 0.5) else rng.choice(cluster.ids)
            report.leader_kills += victim == lid
            cluster.kill(victim)
            kill_times.append(time.monotonic())
            report.kills += 1
            stop.wait(down_for)
            cluster.start(victim)
            cluster.wait_ready(victim)
        stop.wait(interval)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    report.duration_s = time.monotonic() - started
    times = sorted(ack_times)
    report.acked = len(acked)
    if times:
        edges = [started, *times]
        report.longest_gap_s = max(b - a for a, b in itertools.pairwise(edges))
        for k in kill_times:
            after = next((t for t in times if t > k), None)
            report.gaps_after_kill_s.append((after or time.monotonic()) - k)
    # Read everything back through one node (linearizable reads).
    lid = current_leader(cluster) or cluster.ids[0]
    reader = redis.Redis(port=cluster.client_port(lid), socket_timeout=10)
    keys = list(acked)
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        for key, value in zip(batch, reader.mget(batch), strict=True):
            if value != acked[key]:
                report.lost += 1
    return report
