"""What hashes, lists, sets and sorted sets cost: memory per element, snapshot size and time
for one key of 1,000,000 elements, and ``pyxos bench`` throughput of their writes.

    .venv/bin/python bench/types_cost.py [--elements 1000000] [--duration 5] [--skip-bench]

A. For each type, in a child process of its own (a clean RSS): a ``KVStateMachine`` given
   one key of N elements (16-byte members; a hash's values 16 bytes; scores 0..N-1) with
   commands of 1,000 elements each (made one at a time, so that only the state stays in
   memory); then the RSS growth per element, the snapshot's size,
   the time to encode it (``snapshot()``), and the time to install it on a fresh state
   machine the way a follower does: ``prepare_restore`` decoding in a worker thread while
   the main thread keeps applying small commands (the longest gap between two of them is
   the stall a client of that node would see), then the swap. The digest of the restored
   state must equal the original's. Strings (N keys of 16 bytes) for comparison.

B. A 3-node ``pyxos serve`` cluster; ``pyxos bench --ratio 0:1 --write W`` for W in SET,
   HSET, LPUSH, SADD, ZADD (32 clients, pipeline 4, 10,000 keys, 100-byte values). HSET,
   SADD and ZADD overwrite one field or member per key, as SET overwrites the key; LPUSH
   grows its lists.

Results: ``bench/results/types-cost-<date>.json``. The machine may be shared: the JSON
records how busy the rest of it was.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    endpoints_of,
    log,
    machine,
    pyxos_bench,
    pyxos_cluster,
    rss_kib,
    today,
    write_result,
)

BATCH = 1000


def _commands(kind: str, n: int) -> Iterator[list[bytes]]:
    for first in range(0, n, BATCH):
        members = [b"m%015d" % i for i in range(first, min(n, first + BATCH))]
        if kind == "string":
            argv = [b"MSET"]
            for m in members:
                argv += [m, b"v%015d" % 0]
        elif kind == "hash":
            argv = [b"HSET", b"big"]
            for m in members:
                argv += [m, b"v%015d" % 0]
        elif kind == "list":
            argv = [b"RPUSH", b"big", *members]
        elif kind == "set":
            argv = [b"SADD", b"big", *members]
        else:
            argv = [b"ZADD", b"big"]
            for i, m in enumerate(members, first):
                argv += [b"%d" % i, m]
        yield argv


def _one_type(kind: str, n: int, queue: Any) -> None:
    from pyxos.kv import KVStateMachine, encode_request

    base = rss_kib(os.getpid())["VmRSS"]
    sm = KVStateMachine()
    t = time.perf_counter()
    for argv in _commands(kind, n):  # made one at a time: only the state stays in memory
        sm.apply(encode_request(argv, time=1))
    build_s = time.perf_counter() - t
    loaded = rss_kib(os.getpid())["VmRSS"]
    t = time.perf_counter()
    data = sm.snapshot()
    encode_s = time.perf_counter() - t

    fresh = KVStateMachine()
    swap: list[Any] = []

    def decode() -> None:
        swap.append(fresh.prepare_restore(data))

    probe = encode_request([b"INCR", b"probe"])
    worker = threading.Thread(target=decode)
    t = time.perf_counter()
    worker.start()
    gaps, last, applied = 0.0, time.perf_counter(), 0
    while worker.is_alive():
        fresh.apply(probe)
        applied += 1
        now = time.perf_counter()
        gaps, last = max(gaps, now - last), now
    worker.join()
    decode_s = time.perf_counter() - t
    t = time.perf_counter()
    swap[0]()
    swap_s = time.perf_counter() - t
    assert fresh.digest() == sm.digest(), "restored state differs"
    queue.put(
        {
            "type": kind,
            "elements": n,
            "build_s": round(build_s, 2),
            "rss_growth_mib": round((loaded - base) / 1024, 1),
            "bytes_per_element_in_memory": round((loaded - base) * 1024 / n, 1),
            "snapshot_bytes": len(data),
            "snapshot_bytes_per_element": round(len(data) / n, 1),
            "snapshot_encode_s": round(encode_s, 3),
            "install_decode_in_thread_s": round(decode_s, 3),
            "install_swap_s": round(swap_s, 4),
            "commands_applied_while_decoding": applied,
            "longest_gap_between_commands_ms": round(gaps * 1000, 1),
        }
    )


def part_a(n: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for kind in ("string", "hash", "list", "set", "zset"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_one_type, args=(kind, n, queue))
        proc.start()
        row = queue.get(timeout=1800)
        proc.join()
        log(f"{kind}: {json.dumps(row)}")
        rows.append(row)
    return rows


def part_b(tmp: Path, duration: float) -> list[dict[str, Any]]:
    rows = []
    with pyxos_cluster(3, tmp / "cluster") as cluster:
        endpoints = endpoints_of(cluster)
        for write in ("set", "hset", "lpush", "sadd", "zadd"):
            # Each write on an empty store: SET's string keys would make HSET's WRONGTYPE.
            with socket.create_connection(("127.0.0.1", cluster.client_port(1))) as sock:
                sock.sendall(b"*1\r\n$8\r\nFLUSHALL\r\n")
                sock.recv(64)
            result = pyxos_bench(
                endpoints, clients=32, pipeline=4, duration=duration, ratio="0:1",
                extra=["--write", write],
            )  # fmt: skip
            row = {
                "write": write,
                "ops_per_s": round(result["ops_per_s"]),
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "errors": result["errors"],
                "machine_load": result["machine_load"],
                "command": result["command"],
            }
            log(f"{write}: {row['ops_per_s']} ops/s p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms")
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyxos-types-") as tmp:
        out: dict[str, Any] = {"machine": machine(Path(tmp)), "date": today()}
        out["memory_and_snapshots"] = part_a(args.elements)
        if not args.skip_bench:
            out["bench"] = part_b(Path(tmp), args.duration)
    path = write_result(f"types-cost-{today()}.json", out)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
