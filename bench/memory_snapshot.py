"""Memory and snapshots with 1,000,000 keys of 100 bytes.

    .venv/bin/python bench/memory_snapshot.py [--keys 1000000]

Two parts:

A. In one process, the exact calls a node makes: ``KVStateMachine`` fed 1,000 ``MSET``s
   of 1,000 keys, then ``snapshot()`` (serialize), ``Storage.save_snapshot`` (write, fsync,
   compact; on the same disk), ``read_snapshot`` and ``restore()`` on a fresh state
   machine. Gives the time of each step, the snapshot's size, and the RSS of a process
   holding just that state.

B. Real ``pyxos serve`` processes, a 3-node cluster started whole, then node 3 stopped and
   its data dir deleted:
   1. load the keys through the leader with pipelined ``MSET``s (1,000 keys each, 8 in
      flight); RSS (``VmRSS``, ``VmHWM`` from /proc/PID/status) of both running nodes;
   2. restart nodes 1 and 2 with ``--snapshot-every`` just above the applied index (time to
      recover from the log), then send sequential SETs until both nodes log their snapshot:
      the longest SET during it is the stall a snapshot causes (the node serializes on its
      event loop, then writes and fsyncs in a worker thread while its driver waits); then
      restart them once more with snapshots off (time to recover from the snapshot), so
      that no further snapshot disturbs what follows;
   3. baseline: ``pyxos bench`` (16 clients, SET, leader) for 10 s with two nodes up;
   4. start node 3 with an empty data dir while ``pyxos bench`` keeps running: the leader's
      log is compacted, so node 3 must receive the snapshot. Time until it has received it,
      installed it, and applied up to the leader's commit index as of its start; the
      bench's per-second throughput meanwhile shows whether the others kept serving;
   5. RSS of node 3, and a state digest comparison once all three have applied the same
      index.

Results: ``bench/results/memory-snapshot-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    PY,
    REPO,
    log,
    machine,
    pyxos_bench,
    rss_kib,
    today,
    write_result,
)

from pyxos.benchmark.loadgen import KEY_FORMAT, make_value, preload

# --------------------------------------------------------------------------- part A


def part_a(keys: int, tmp: Path) -> dict[str, Any]:
    """Runs in a child process (clean RSS): the state machine and storage calls only."""
    from pyxos.kv import KVStateMachine
    from pyxos.kv.request import encode_request
    from pyxos.storage import LmdbStorage

    value = make_value(100)
    base = rss_kib(_pid())["VmRSS"]
    sm = KVStateMachine()
    t = time.perf_counter()
    batch = 1000
    for first in range(0, keys, batch):
        argv = [b"MSET"]
        for k in range(first, min(keys, first + batch)):
            argv += [KEY_FORMAT % k, value]
        sm.apply(encode_request(argv))
    apply_s = time.perf_counter() - t
    loaded = rss_kib(_pid())["VmRSS"]

    t = time.perf_counter()
    data = sm.snapshot()
    serialize_s = time.perf_counter() - t
    peak = rss_kib(_pid())

    storage = LmdbStorage.open(tmp / "partA", node_id=1, cluster_id="pyxos", members=(1, 2, 3))
    t = time.perf_counter()
    storage.save_snapshot(keys // batch, (1, 2, 3), data)
    save_s = time.perf_counter() - t
    del data
    t = time.perf_counter()
    raw = storage.read_snapshot()
    read_s = time.perf_counter() - t
    storage.close()
    fresh = KVStateMachine()
    t = time.perf_counter()
    fresh.restore(raw)
    restore_s = time.perf_counter() - t
    assert len(fresh) == keys and fresh.digest() == sm.digest()
    return {
        "keys": keys,
        "value_size": 100,
        "apply_1000_msets_s": round(apply_s, 3),
        "snapshot_bytes": len(raw),
        "serialize_s": round(serialize_s, 3),
        "save_write_fsync_s": round(save_s, 3),
        "take_total_s": round(serialize_s + save_s, 3),
        "read_file_s": round(read_s, 3),
        "restore_s": round(restore_s, 3),
        "install_cpu_total_s": round(read_s + restore_s, 3),
        "rss_baseline_mib": round(base / 1024, 1),
        "rss_state_loaded_mib": round(loaded / 1024, 1),
        "rss_state_only_mib": round((loaded - base) / 1024, 1),
        "rss_peak_while_serializing_mib": round(peak["VmHWM"] / 1024, 1),
        "bytes_per_key_in_memory": round((loaded - base) * 1024 / keys, 1),
    }


def _pid() -> int:
    import os

    return os.getpid()


# --------------------------------------------------------------------------- part B helpers


def info(port: int, section: str = "paxos") -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        sec = section.encode()
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(sec), sec))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]) + 2:
                break
    body = data.partition(b"\r\n")[2].decode(errors="replace")
    return dict(line.split(":", 1) for line in body.splitlines() if ":" in line)


def applied(port: int) -> int:
    try:
        return int(info(port)["applied_index"])
    except (OSError, KeyError, ValueError):
        return -1


def leader_of(cluster: Any, nodes: list[int], timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, KeyError, ValueError):
            seen = {info(cluster.client_port(k)).get("leader_id") for k in nodes}
            if len(seen) == 1:
                (lid,) = seen
                if lid and int(lid) in nodes:
                    return int(lid)
        time.sleep(0.1)
    raise TimeoutError("no leader")


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_events(cluster: Any, node: int, pattern: str) -> list[tuple[float, str]]:
    """(unix time, line) of every log line of ``node`` matching ``pattern``."""
    out = []
    for line in cluster.log_text(node).splitlines():
        m = _LOG_TIME.match(line)
        if m and re.search(pattern, line):
            stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            out.append((stamp.timestamp(), line))
    return out


def start_then_wipe_node3(cluster: Any) -> None:
    """Start every member of a new cluster (a new data dir votes only once the others have
    registered it), then stop node 3 and delete its data dir, so it can join empty later."""
    cluster.start()
    cluster.wait_ready(timeout=60)
    deadline = time.monotonic() + 60
    while not all(log_events(cluster, k, "it votes now") for k in (1, 2, 3)):
        if time.monotonic() > deadline:
            raise TimeoutError("the members did not register each other's data dirs")
        time.sleep(0.1)
    cluster.stop(3)
    shutil.rmtree(cluster.data_dir / "node3")


def probe_until(port: int, done: Any, timeout: float) -> list[tuple[float, float, str]]:
    """Sequential SETs until ``done()``: (unix send time, latency s, error or "").

    An error reply (``-TIMEOUT`` when the leader changed with the SET in flight,
    ``-NOLEADER``) is recorded, not raised: it is part of what a snapshot costs.
    """
    samples = []
    value = make_value(100)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            key = b"probe:%d" % (i % 100)
            req = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value)
            t0, w0 = time.perf_counter(), time.time()
            s.sendall(req)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("probe connection closed")
                reply += chunk
            error = "" if reply.startswith(b"+OK") else reply.decode(errors="replace").strip()
            samples.append((w0, time.perf_counter() - t0, error))
            if error:
                time.sleep(0.01)
            i += 1
            if i % 20 == 0 and done():
                break
    return samples


def unavailable_s(samples: list[tuple[float, float, str]]) -> float:
    """Longest span from sending a SET to the next success, across failed attempts."""
    worst, since = 0.0, None
    for sent, lat, error in samples:
        since = sent if since is None else since
        if not error:
            worst = max(worst, sent + lat - since)
            since = None
    return worst


NODE_ARGS: list[str] = []
"""More ``pyxos serve`` flags for every node (``--election-ms``)."""


def restart_both(cluster: Any, snapshot_every: int, until_applied: int) -> tuple[int, int]:
    """Restart nodes 1 and 2 with ``--snapshot-every``; return the leader and its client
    port once both have applied ``until_applied`` again."""
    cluster.stop(1)
    cluster.stop(2)
    cluster.extra_args = ["--snapshot-every", str(snapshot_every), *NODE_ARGS]
    for k in (1, 2):
        cluster.start(k)
    cluster.wait_ready(1, timeout=120)
    cluster.wait_ready(2, timeout=120)
    lead = leader_of(cluster, [1, 2], timeout=120)
    while min(applied(cluster.client_port(k)) for k in (1, 2)) < until_applied:
        time.sleep(0.05)
    return lead, int(cluster.client_port(lead))


def mib(pid: int) -> dict[str, float]:
    return {k: round(v / 1024, 1) for k, v in rss_kib(pid).items()}


# --------------------------------------------------------------------------- part B


def part_b(keys: int, tmp: Path, install_budget: float) -> dict[str, Any]:
    from pyxos.launch.local_cluster import LocalCluster, find_base_port

    out: dict[str, Any] = {}
    cluster = LocalCluster(3, find_base_port(3), tmp / "cluster",
                           extra_args=["--snapshot-every", str(10**9), *NODE_ARGS])  # fmt: skip
    bench_proc: subprocess.Popen[str] | None = None
    try:
        start_then_wipe_node3(cluster)
        lead = leader_of(cluster, [1, 2])
        lport = cluster.client_port(lead)
        log(f"nodes 1 and 2 up, leader {lead}; loading {keys:,} keys with pipelined MSET")

        # 1. load
        t = time.perf_counter()
        asyncio.run(preload(("127.0.0.1", lport), keys, 100, batch=1000, depth=8, timeout=600))
        load_s = time.perf_counter() - t
        target = applied(lport)
        other = 2 if lead == 1 else 1
        while applied(cluster.client_port(other)) < target:
            time.sleep(0.1)
        out["load"] = {
            "keys": keys,
            "seconds": round(load_s, 2),
            "keys_per_s": round(keys / load_s),
            "msets": (keys + 999) // 1000,
            "slots": target,
        }
        time.sleep(1.0)
        out["rss_after_load_mib"] = {f"node{k}": mib(cluster.procs[k].pid) for k in (1, 2)}
        log(f"loaded in {load_s:.1f}s ({keys / load_s:,.0f} keys/s), applied index {target}; "
            f"RSS {out['rss_after_load_mib']}")  # fmt: skip

        # 2. restart with a snapshot threshold just above the applied index
        every = target + 30
        restarted_unix = time.time()
        t = time.perf_counter()
        lead, lport = restart_both(cluster, every, target)
        out["restart_replay_log_s"] = round(time.perf_counter() - t, 2)
        log(f"restarted with --snapshot-every {every}: both replayed {target} slots in "
            f"{out['restart_replay_log_s']}s; probing until both snapshot")  # fmt: skip
        snap_re = r"snapshot through slot \d+ \(\d+ bytes\)"

        def both_snapshotted() -> bool:
            return all(log_events(cluster, k, snap_re) for k in (1, 2))

        samples = probe_until(lport, both_snapshotted, timeout=120)
        time.sleep(0.5)
        ok = sorted(x[1] for x in samples if not x[2])
        failed = [x for x in samples if x[2]]
        events = {k: log_events(cluster, k, snap_re) for k in (1, 2)}
        size = re.search(r"\((\d+) bytes\)", events[1][-1][1]) if events[1] else None
        elections = {
            f"node{k}": [
                f"+{when - restarted_unix:.2f}s {line.split(': ', 1)[-1]}"
                for when, line in log_events(cluster, k, "leads with")
                if when >= restarted_unix - 1
            ]
            for k in (1, 2)
        }
        out["snapshot_in_cluster"] = {
            "snapshot_every": every,
            "snapshot_bytes": int(size.group(1)) if size else None,
            "probe_sets": len(samples),
            "probe_p50_ms": round(ok[len(ok) // 2] * 1000, 2) if ok else None,
            "longest_successful_set_ms": round(ok[-1] * 1000, 1) if ok else None,
            "failed_sets": len(failed),
            "failed_examples": sorted({x[2][:120] for x in failed})[:3],
            "longest_unavailable_ms": round(unavailable_s(samples) * 1000, 1),
            "elections_logged_since_restart": elections,
            "rss_after_snapshot_mib": {f"node{k}": mib(cluster.procs[k].pid) for k in (1, 2)},
        }
        log(f"snapshot in cluster: {out['snapshot_in_cluster']}")

        # No more snapshots from here on (they would recur every `every` slots and disturb
        # what follows); the one on disk stays, and so does the compacted log.
        applied_now = min(applied(cluster.client_port(k)) for k in (1, 2))
        t = time.perf_counter()
        lead, lport = restart_both(cluster, 10**9, applied_now)
        out["restart_from_snapshot_s"] = round(time.perf_counter() - t, 2)
        out["rss_after_restart_from_snapshot_mib"] = {
            f"node{k}": mib(cluster.procs[k].pid) for k in (1, 2)
        }
        log(f"restarted from the snapshot in {out['restart_from_snapshot_s']}s; "
            f"RSS {out['rss_after_restart_from_snapshot_mib']}")  # fmt: skip

        # 3. baseline with two nodes
        ep = f"127.0.0.1:{lport}"
        base = pyxos_bench(ep, clients=16, duration=10, warmup=1)
        out["baseline_2_nodes"] = _brief(base)
        log(f"baseline, 2 nodes up: {base['ops_per_s']:,.0f} ops/s, p99 {base['p99_ms']} ms")

        # 4. node 3 joins empty and must install the snapshot, under load
        bench_cmd = [
            PY, "-m", "pyxos.benchmark", "--endpoints", ep, "--clients", "16",
            "--duration", str(install_budget + 10), "--warmup", "0", "--ratio", "0:1",
            "--value-size", "100", "--json", "--no-progress",
        ]  # fmt: skip
        bench_proc = subprocess.Popen(bench_cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(3.0)
        goal = int(info(lport)["commit_index"])
        started_unix = time.time()
        t = time.perf_counter()
        cluster.start(3)
        p3 = cluster.client_port(3)
        caught_up = None
        while time.perf_counter() - t < install_budget:
            if applied(p3) >= goal:
                caught_up = time.perf_counter() - t
                break
            time.sleep(0.1)
        time.sleep(3.0)  # a few seconds after catching up, for comparison
        bench_proc.send_signal(signal.SIGINT)  # pyxos bench: end the window, report it
        stdout, _ = bench_proc.communicate(timeout=install_budget + 120)
        bench_proc = None
        during = json.loads(stdout.strip().splitlines()[-1])
        during["command"] = " ".join(bench_cmd[1:])
        received = log_events(cluster, 3, r"received snapshot through slot")
        installed = log_events(cluster, 3, r"installed snapshot through slot")
        sending = log_events(cluster, lead, r"sending snapshot through slot .* to node 3")
        timeline = during.get("timeline", [])
        w0 = during.get("window_start_unix", started_unix)
        end_unix = started_unix + (caught_up or install_budget)
        inside = [
            n for i, n in enumerate(timeline)
            if w0 + i >= started_unix and w0 + i + 1 <= end_unix
        ]  # fmt: skip
        before = [n for i, n in enumerate(timeline) if w0 + i + 1 <= started_unix]
        out["install"] = {
            "goal_commit_index": goal,
            "caught_up_s": None if caught_up is None else round(caught_up, 2),
            "leader_started_sending_s": round(sending[0][0] - started_unix, 2) if sending else None,
            "snapshot_received_s": round(received[0][0] - started_unix, 2) if received else None,
            "snapshot_installed_s": round(installed[0][0] - started_unix, 2) if installed else None,
            "rss_node3_mib": mib(cluster.procs[3].pid),
            "load_during": _brief(during),
            "ops_per_s_each_second_before_node3": before,
            "ops_per_s_each_second_while_installing": inside,
            "ops_per_s_while_installing_mean": round(sum(inside) / len(inside)) if inside else None,
            "timeline": timeline,
            "timeline_start_vs_node3_start_s": round(w0 - started_unix, 2),
        }
        log(f"install: {out['install']}")

        # 5. convergence
        ports = [cluster.client_port(k) for k in (1, 2, 3)]
        deadline = time.monotonic() + 60
        digests: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rows = [info(p, "digest") for p in ports]
            if len({r.get("applied_index") for r in rows}) == 1:
                digests = {
                    f"node{k}": r.get("state_digest") for k, r in zip((1, 2, 3), rows, strict=True)
                }
                break
            time.sleep(0.2)
        out["converged"] = bool(digests) and len(set(digests.values())) == 1
        out["rss_final_mib"] = {f"node{k}": mib(cluster.procs[k].pid) for k in (1, 2, 3)}
    finally:
        if bench_proc is not None and bench_proc.poll() is None:
            bench_proc.kill()
            bench_proc.wait()
        cluster.close()
    return out


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("ops_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms", "errors", "duration_s")
    return {k: r.get(k) for k in keep} | {"command": r.get("command")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--install-budget", type=float, default=90.0,
                    help="Longest wait for node 3 to catch up (s).")  # fmt: skip
    ap.add_argument("--only", default="a,b", help="a (in-process), b (cluster), or both.")
    ap.add_argument("--keep", action="store_true", help="Keep the data dirs and node logs.")
    ap.add_argument(
        "--election-ms",
        type=float,
        help="The nodes' election timeout (pyxos serve --election-ms); at 10M keys the "
        "default 300 ms is shorter than the loop's longest stalls",
    )
    ap.add_argument("--out", help="Result file name in bench/results (memory-snapshot-DATE.json)")
    ap.add_argument("--part-a-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part_a_child:
        print(json.dumps(part_a(args.keys, Path(args.part_a_child))))
        return
    tmp = Path(tempfile.mkdtemp(prefix="pyxos-memsnap-"))
    out: dict[str, Any] = {"machine": machine(tmp)}
    if args.election_ms:
        NODE_ARGS[:] = ["--election-ms", str(args.election_ms)]
        out["node_args"] = NODE_ARGS
    try:
        if "a" in args.only:
            log(f"part A: state machine + storage in one process, {args.keys:,} keys")
            proc = subprocess.run(
                [PY, __file__, "--keys", str(args.keys), "--part-a-child", str(tmp)],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"part A failed: {proc.stderr[-3000:]}")
            out["in_process"] = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"part A: {out['in_process']}")
        if "b" in args.only:
            log("part B: real processes")
            out["cluster"] = part_b(args.keys, tmp, args.install_budget)
    finally:
        if args.keep:
            log(f"kept data dirs and node logs in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    write_result(args.out or f"memory-snapshot-{today()}.json", out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
