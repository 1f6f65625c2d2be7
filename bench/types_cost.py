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

C. With ``--install``: ``memory_snapshot.py``'s real-process scenario, loading one sorted set
   of N members (the slowest type to decode) instead of N string keys: two nodes take a
   snapshot of it (a sequential client measures the stall), then node 3 joins with an
   empty data dir under ``pyxos bench`` load and must install it; the time until it caught
   up, the others' throughput meanwhile, and whether all three digests agree after.

Results: ``bench/results/types-cost-<date>.json``. The machine may be shared: the JSON
records how busy the rest of it was.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
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


async def _load_zset(
    endpoint: tuple[str, int],
    n: int,
    value_size: int = 0,
    batch: int = BATCH,
    depth: int = 8,
    timeout: float = 600.0,
) -> None:
    """Load one sorted set of ``n`` members through ``endpoint``: pipelined ZADDs of
    ``batch`` members, ``depth`` in flight (the signature of ``loadgen.preload``)."""
    import asyncio

    from pyxos.resp.requests import encode_command

    reader, writer = await asyncio.open_connection(*endpoint)
    commands = [encode_command(argv) for argv in _commands("zset", n)]
    inflight = 0
    buf = b""

    async def one_reply() -> None:
        nonlocal buf
        while b"\r\n" not in buf:
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                raise ConnectionError("the server closed the connection")
            buf += data
        line, _, buf = buf.partition(b"\r\n")
        if not line.startswith(b":"):
            raise ConnectionError(f"ZADD failed: {line!r}")

    for cmd in commands:
        writer.write(cmd)
        inflight += 1
        if inflight >= depth:
            await one_reply()
            inflight -= 1
    while inflight:
        await one_reply()
        inflight -= 1
    writer.close()


def part_c(n: int, tmp: Path, install_budget: float = 240.0) -> dict[str, Any]:
    """Real processes: a follower that lost its disk installs a snapshot holding one sorted
    set of ``n`` members while the others serve (helpers from ``memory_snapshot.py``)."""
    import asyncio
    import signal
    import subprocess

    from benchlib import PY, REPO
    from memory_snapshot import (
        _brief,
        applied,
        info,
        leader_of,
        log_events,
        mib,
        probe_until,
        restart_both,
        start_then_wipe_node3,
    )

    from pyxos.launch.local_cluster import LocalCluster, find_base_port

    out: dict[str, Any] = {"what": f"one sorted set of {n:,} members (16-byte members)"}
    cluster = LocalCluster(3, find_base_port(3), tmp / "install",
                           extra_args=["--snapshot-every", str(10**9)])  # fmt: skip
    bench_proc: subprocess.Popen[str] | None = None
    try:
        start_then_wipe_node3(cluster)
        lead = leader_of(cluster, [1, 2])
        lport = cluster.client_port(lead)
        t = time.perf_counter()
        asyncio.run(_load_zset(("127.0.0.1", lport), n))
        out["load_s"] = round(time.perf_counter() - t, 2)
        target = applied(lport)
        while min(applied(cluster.client_port(k)) for k in (1, 2)) < target:
            time.sleep(0.1)
        log(f"loaded {n:,} members in {out['load_s']}s; applied index {target}")

        every = target + 30
        lead, lport = restart_both(cluster, every, target)
        snap_re = r"snapshot through slot \d+ \(\d+ bytes\)"
        samples = probe_until(
            lport, lambda: all(log_events(cluster, k, snap_re) for k in (1, 2)), timeout=120
        )
        ok = sorted(x[1] for x in samples if not x[2])
        events = log_events(cluster, 1, snap_re)
        size = re.search(r"\((\d+) bytes\)", events[-1][1]) if events else None
        out["snapshot_in_cluster"] = {
            "snapshot_bytes": int(size.group(1)) if size else None,
            "probe_sets": len(samples),
            "longest_successful_set_ms": round(ok[-1] * 1000, 1) if ok else None,
            "failed_sets": sum(1 for x in samples if x[2]),
        }
        log(f"snapshot in cluster: {out['snapshot_in_cluster']}")
        lead, lport = restart_both(cluster, 10**9, min(applied(cluster.client_port(k))
                                                       for k in (1, 2)))  # fmt: skip

        ep = f"127.0.0.1:{lport}"
        bench_cmd = [
            PY, "-m", "pyxos.benchmark", "--endpoints", ep, "--clients", "16",
            "--duration", str(install_budget + 10), "--warmup", "0", "--ratio", "0:1",
            "--value-size", "100", "--json", "--no-progress",
        ]  # fmt: skip
        bench_proc = subprocess.Popen(bench_cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(3.0)
        goal = int(info(lport)["commit_index"])
        started = time.time()
        t = time.perf_counter()
        cluster.start(3)
        p3 = cluster.client_port(3)
        caught_up = None
        while time.perf_counter() - t < install_budget:
            if applied(p3) >= goal:
                caught_up = time.perf_counter() - t
                break
            time.sleep(0.1)
        time.sleep(2.0)
        bench_proc.send_signal(signal.SIGINT)
        stdout, _ = bench_proc.communicate(timeout=install_budget + 120)
        bench_proc = None
        during = json.loads(stdout.strip().splitlines()[-1])
        received = log_events(cluster, 3, r"received snapshot through slot")
        installed = log_events(cluster, 3, r"installed snapshot through slot")
        w0 = during.get("window_start_unix", started)
        end = started + (caught_up or install_budget)
        timeline = during.get("timeline", [])
        inside = [c for i, c in enumerate(timeline) if w0 + i >= started and w0 + i + 1 <= end]
        out["install"] = {
            "caught_up_s": None if caught_up is None else round(caught_up, 2),
            "snapshot_received_s": round(received[0][0] - started, 2) if received else None,
            "snapshot_installed_s": round(installed[0][0] - started, 2) if installed else None,
            "rss_node3_mib": mib(cluster.procs[3].pid),
            "load_during": _brief(during),
            "ops_per_s_each_second_while_installing": inside,
            "command": " ".join(bench_cmd[1:]),
        }
        log(f"install: {out['install']}")
        ports = [cluster.client_port(k) for k in (1, 2, 3)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = [info(p, "digest") for p in ports]
            if len({r.get("applied_index") for r in rows}) == 1:
                out["converged"] = len({r.get("state_digest") for r in rows}) == 1
                break
            time.sleep(0.2)
    finally:
        if bench_proc is not None and bench_proc.poll() is None:
            bench_proc.kill()
            bench_proc.wait()
        cluster.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--install", action="store_true", help="part C (real processes)")
    parser.add_argument("--only-install", action="store_true", help="part C alone")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyxos-types-") as tmp:
        out: dict[str, Any] = {"machine": machine(Path(tmp)), "date": today()}
        if not args.only_install:
            out["memory_and_snapshots"] = part_a(args.elements)
            if not args.skip_bench:
                out["bench"] = part_b(Path(tmp), args.duration)
        if args.install or args.only_install:
            out["install_on_a_follower"] = part_c(args.elements, Path(tmp))
    name = "types-install" if args.only_install else "types-cost"
    path = write_result(f"{name}-{today()}.json", out)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
