"""One in-process harness for replicated-object libraries: pyxos.Replicated and PySyncObj.

    .venv/bin/python bench/lib_harness.py --system pyxos --nodes 3 --clients 64 --duration 10
    .venv/bin/python bench/lib_harness.py --system pysyncobj --nodes 3 --clients 1 --duration 10

Same shape for both: N processes on 127.0.0.1, each holding one replica of the same
key-value object (a dict with a replicated ``set(key, value)``); once a leader is elected,
the leader's process runs ``--clients`` closed-loop callers inside itself for
``--warmup + --duration`` seconds, each calling ``set`` with a random key of ``--keys``
and a ``--value-size`` byte value and waiting for it to be committed and applied before
the next call. Latency is timed around each call. The last line of stdout is JSON with
the same keys as ``pyxos bench``.

Durability differs and is reported: pyxos fsyncs every batch on a majority before a
command is chosen; PySyncObj 0.3.17 with a ``journalFile`` appends to an mmap'ed file
that it never fsyncs while running (no flush call outside shutdown), so an acknowledged
PySyncObj write survives a process crash but not a machine crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import free_port_block, log  # noqa: E402

from pyxos.benchmark.stats import latency_summary  # noqa: E402


def make_value(size: int) -> str:
    rng = random.Random(0)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))


class Recorder:
    """Latencies and errors of the measured window (thread-safe enough: GIL appends)."""

    def __init__(self) -> None:
        self.lat: array[int] = array("q")
        self.errors = 0
        self.error_samples: set[str] = set()
        self.recording = False
        self.stopped = False

    def result(self, window: float, cpu: float, extra: dict[str, Any]) -> dict[str, Any]:
        ops = len(self.lat)
        return {
            "ops": ops,
            "ops_per_s": round(ops / window, 1),
            **latency_summary([self.lat]),
            "errors": self.errors,
            "error_samples": sorted(self.error_samples)[:5],
            "duration_s": round(window, 3),
            "driver_process_cpu_pct": round(100 * cpu / window, 1),
            **extra,
        }


def claim_driver(control: Path) -> bool:
    """The first leader to get here drives the load; nobody else does."""
    try:
        fd = os.open(control / "driver", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


# --------------------------------------------------------------------------- pyxos


async def pyxos_node(args: argparse.Namespace) -> None:
    import pyxos

    class KV:
        def __init__(self) -> None:
            self.data: dict[str, str] = {}

        @pyxos.command
        def set(self, key: str, value: str) -> None:
            self.data[key] = value

        @pyxos.query
        def get(self, key: str) -> str | None:
            return self.data.get(key)

    control = Path(args.dir)
    cluster = ",".join(f"{k}=127.0.0.1:{args.base_port + k - 1}" for k in range(1, args.nodes + 1))
    async with pyxos.Replicated(
        KV(), node_id=args.node, cluster=cluster, data_dir=control / f"node{args.node}"
    ) as kv:
        deadline = time.monotonic() + args.warmup + args.duration + 120
        while not (control / "done").exists() and time.monotonic() < deadline:
            leader = kv.node.leader_id
            if leader == args.node and claim_driver(control):
                await pyxos_drive(kv, args, control)
                (control / "done").touch()
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let followers apply the tail before everyone stops


async def pyxos_drive(kv: Any, args: argparse.Namespace, control: Path) -> None:
    rec = Recorder()
    value = make_value(args.value_size)

    async def caller(i: int) -> None:
        rnd = random.Random(i)
        while not rec.stopped:
            key = f"key:{int(rnd.random() * args.keys):012d}"
            t = time.perf_counter_ns()
            try:
                await kv.set(key, value)
            except Exception as exc:
                if rec.recording:
                    rec.errors += 1
                    rec.error_samples.add(repr(exc)[:200])
                continue
            if rec.recording:
                rec.lat.append(time.perf_counter_ns() - t)

    tasks = [asyncio.create_task(caller(i)) for i in range(args.clients)]
    await asyncio.sleep(args.warmup)
    cpu0, t0 = time.process_time(), time.perf_counter()
    rec.recording = True
    await asyncio.sleep(args.duration)
    rec.recording = False
    window, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rec.stopped = True
    await asyncio.wait(tasks, timeout=10)
    for t in tasks:
        t.cancel()
    result = rec.result(window, cpu, {"durability": "fsync on a majority before commit"})
    (control / "result.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------- PySyncObj

PYSYNCOBJ_TUNINGS: dict[str, dict[str, Any]] = {
    # As shipped: batches commands and sends them every appendEntriesPeriod (100 ms).
    "default": {},
    # Sends each command at once (the leader's poller is woken through a pipe).
    "nobatch": {"appendEntriesUseBatch": False},
    # Batching, but a 5 ms send period and tick.
    "fastbatch": {"appendEntriesPeriod": 0.005, "autoTickPeriod": 0.005},
}


def pysyncobj_node(args: argparse.Namespace) -> None:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class KV(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, partners: list[str], conf: Any) -> None:
            super().__init__(me, partners, conf)
            self.data: dict[str, str] = {}

        @replicated  # type: ignore[misc]
        def set(self, key: str, value: str) -> None:
            self.data[key] = value

    control = Path(args.dir)
    addrs = [f"127.0.0.1:{args.base_port + k - 1}" for k in range(1, args.nodes + 1)]
    me = addrs[args.node - 1]
    node_dir = control / f"node{args.node}"
    node_dir.mkdir(parents=True, exist_ok=True)
    tuning: dict[str, Any] = PYSYNCOBJ_TUNINGS[args.tuning]
    conf = SyncObjConf(
        journalFile=str(node_dir / "journal"), fullDumpFile=str(node_dir / "dump"), **tuning
    )
    obj = KV(me, [a for a in addrs if a != me], conf)
    try:
        deadline = time.monotonic() + args.warmup + args.duration + 120
        while not (control / "done").exists() and time.monotonic() < deadline:
            if obj._isLeader() and claim_driver(control):
                pysyncobj_drive(obj, args, control, FAIL_REASON.SUCCESS)
                (control / "done").touch()
                break
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        obj.destroy()


def pysyncobj_drive(obj: Any, args: argparse.Namespace, control: Path, success: Any) -> None:
    rec = Recorder()
    value = make_value(args.value_size)
    rngs = [random.Random(i) for i in range(args.clients)]
    in_flight = [0]
    idle = threading.Event()

    def issue(i: int) -> None:
        if rec.stopped:
            in_flight[0] -= 1
            if in_flight[0] == 0:
                idle.set()
            return
        key = f"key:{int(rngs[i].random() * args.keys):012d}"
        t = time.perf_counter_ns()

        def done(_result: Any, error: Any) -> None:
            if rec.recording:
                if error == success:
                    rec.lat.append(time.perf_counter_ns() - t)
                else:
                    rec.errors += 1
                    rec.error_samples.add(f"FAIL_REASON {error}")
            issue(i)

        obj.set(key, value, callback=done)

    in_flight[0] = args.clients
    for i in range(args.clients):
        issue(i)
    time.sleep(args.warmup)
    cpu0, t0 = time.process_time(), time.perf_counter()
    rec.recording = True
    time.sleep(args.duration)
    rec.recording = False
    window, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rec.stopped = True
    idle.wait(10)
    result = rec.result(
        window, cpu, {"durability": "journal in an mmap'ed file, never fsynced while running"}
    )
    (control / "result.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------- coordinator


def coordinate(args: argparse.Namespace) -> dict[str, Any]:
    base = free_port_block(args.nodes)
    control = Path(tempfile.mkdtemp(prefix=f"harness-{args.system}-", dir=args.tmp))
    procs = []
    try:
        for k in range(1, args.nodes + 1):
            cmd = [
                sys.executable, __file__, "--node", str(k), "--system", args.system,
                "--nodes", str(args.nodes), "--base-port", str(base), "--dir", str(control),
                "--clients", str(args.clients), "--duration", str(args.duration),
                "--warmup", str(args.warmup), "--value-size", str(args.value_size),
                "--keys", str(args.keys), "--tuning", args.tuning,
            ]  # fmt: skip
            logf = open(control / f"node{k}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + args.warmup + args.duration + 150
        result_file = control / "result.json"
        while not result_file.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the harness produced no result in time")
            if all(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(15)
        if not result_file.exists():
            logs = (control / "node1.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"no result; node1 log:\n{logs}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if not args.keep:
            import shutil

            shutil.rmtree(control, ignore_errors=True)
    result.update(
        system=args.system,
        nodes=args.nodes,
        clients=args.clients,
        value_size=args.value_size,
        keys=args.keys,
    )
    if args.system == "pysyncobj":
        result["tuning"] = {args.tuning: PYSYNCOBJ_TUNINGS[args.tuning]}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", choices=("pyxos", "pysyncobj"), required=True)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument(
        "--tuning",
        choices=("default", "nobatch", "fastbatch"),
        default="default",
        help="PySyncObj configuration (see PYSYNCOBJ_TUNINGS); ignored for pyxos.",
    )
    ap.add_argument("--tmp", default=None, help="Parent of the data dirs (default: $TMPDIR).")
    ap.add_argument("--keep", action="store_true", help="Keep data dirs and logs.")
    ap.add_argument("--json", action="store_true", help="(always on) JSON last line.")
    ap.add_argument("--node", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node is None:
        result = coordinate(args)
        log(
            f"{args.system} library, {args.nodes} nodes, {args.clients} callers: "
            f"{result['ops_per_s']:,.0f} ops/s, p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms, {result['errors']} errors"
        )
        print(json.dumps(result))
    elif args.system == "pyxos":
        try:
            import uvloop

            uvloop.run(pyxos_node(args))
        except ImportError:
            asyncio.run(pyxos_node(args))
    else:
        pysyncobj_node(args)


if __name__ == "__main__":
    main()
