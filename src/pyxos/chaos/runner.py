"""``pyxos chaos``: real processes, real faults, and a verdict from what clients saw.

1. start a cluster of ``pyxos serve`` processes, every peer link behind a proxy (and, for
   the ``power`` nemesis, every node's data dir on a lazy mount of its own);
2. run the workload and the nemesis together for ``duration`` seconds;
3. heal everything, wait for a leader, read every key back (recorded in the history);
4. judge: the history must be linearizable, no acknowledged unique write may be lost,
   every replica must reach the same state digest.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pyxos.certs import make_dev_certs
from pyxos.chaos import power
from pyxos.chaos.nemesis import KINDS, NEEDS_ROOT, Fault, Nemesis, current_leader, unavailable
from pyxos.chaos.netfilter import PacketLoss
from pyxos.chaos.power import PowerSupply
from pyxos.chaos.proxy import LinkProxies
from pyxos.chaos.workload import Recorder, Worker
from pyxos.check import check_history, write_history
from pyxos.launch.local_cluster import LocalCluster, find_base_port, free_ports

NODE_ARGS = ["--tick-ms", "10", "--election-ms", "150", "--heartbeat-ms", "30"]


@dataclass(slots=True)
class ChaosConfig:
    duration: float = 20.0
    nodes: int = 3
    nemesis: tuple[str, ...] = tuple(k for k in KINDS if k not in NEEDS_ROOT)
    seed: int = 0
    workers: int = 10
    keys: int = 8
    think: float = 0.005
    out: Path | None = None
    test_bug: str | None = None
    check_timeout: float = 300.0
    rotate: float = 10.0
    """Seconds before the workload moves to fresh keys (keeps each key's history short)."""
    pace: float = 1.0
    """Scales the nemesis's healthy gaps (1-3 s) and fault holds (1.5-4 s): 0.5 is twice
    as many faults in the same time."""
    lazy_fs: bool | None = None
    """Every data dir on a lazy mount (:mod:`pyxos.chaos.power`); ``None``: only when the
    ``power`` nemesis is on. Slower: compare runs only with the same setting."""
    storage: str | None = None
    """The nodes' storage engine (``pyxos serve --storage``); ``None``: the default."""
    tls: bool = False
    """Mutual TLS on every peer link and TLS for every workload client, with a development
    CA and certificates made for the run (:func:`pyxos.certs.make_dev_certs`). The proxies
    then carry TLS records, so every fault acts on encrypted links."""


@dataclass(slots=True)
class ChaosReport:
    ops: int = 0
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    faults: list[dict[str, object]] = field(default_factory=list)
    linearizable: bool = False
    checker_verdict: str = ""
    checker_explanation: str = ""
    lost_acked_writes: int = 0
    acked_unique_writes: int = 0
    converged: bool = False
    down_nodes: dict[int, str] = field(default_factory=dict)
    """Nodes that would not start again after the faults, with the reason they gave (0:
    the cluster, when it could not even be read back)."""
    nemesis_errors: list[str] = field(default_factory=list)
    """Faults that could not be carried out as planned (a membership change not taking
    effect): the cluster did not do what an operator asked."""
    lazy_fs: bool = False
    digests: dict[int, str] = field(default_factory=dict)
    ops_per_second: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    check_seconds: float = 0.0
    out: str | None = None

    @property
    def passed(self) -> bool:
        ok = self.linearizable and self.lost_acked_writes == 0 and self.converged
        return ok and not self.down_nodes and not self.nemesis_errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": self.ops,
            "ok": self.ok,
            "fail": self.fail,
            "unknown": self.unknown,
            "faults": len(self.faults),
            "fault_list": self.faults,
            "linearizable": self.linearizable,
            "checker_verdict": self.checker_verdict,
            "lost_acked_writes": self.lost_acked_writes,
            "acked_unique_writes": self.acked_unique_writes,
            "converged": self.converged,
            "down_nodes": self.down_nodes,
            "nemesis_errors": self.nemesis_errors,
            "lazy_fs": self.lazy_fs,
            "ops_per_second": self.ops_per_second,
            "duration_s": round(self.duration_s, 1),
            "check_seconds": round(self.check_seconds, 2),
            "out": self.out,
            "passed": self.passed,
        }


async def _until(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = await asyncio.to_thread(predicate)
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        await asyncio.sleep(0.1)
    return None


def _wait_all(cluster: LocalCluster, timeout: float) -> dict[int, str]:
    """Wait for every node to answer; those that exit instead, with their last complaint."""
    down = {}
    for k in cluster.ids:
        try:
            cluster.wait_ready(k, timeout)
        except (RuntimeError, TimeoutError) as exc:
            complaints = [line for line in cluster.log_text(k).splitlines() if "CRITICAL" in line]
            down[k] = complaints[-1].split(": ", 1)[-1] if complaints else str(exc)
    return down


def _digests(cluster: LocalCluster) -> dict[int, tuple[int, str]]:
    out = {}
    for k in cluster.ids:
        if not cluster.running(k):
            continue
        info = redis.Redis(port=cluster.client_port(k), socket_timeout=2).info("digest")
        out[k] = (int(info["applied_index"]), str(info["state_digest"]))
    return out


def _availability(fault: Fault, recorder: Recorder, end_of_run: float) -> dict[str, float]:
    """How long clients saw no success during a fault, and how soon after it they did."""
    oks = sorted(t for t, kind, _ in recorder.completions if kind == "ok")
    end = fault.end or end_of_run
    inside = [fault.start, *[t for t in oks if fault.start < t < end], end]
    after = next((t for t in oks if t >= end), None)
    return {
        "longest_ok_gap_s": round(max(b - a for a, b in itertools.pairwise(inside)), 3),
        "recovery_s": round(after - end, 3) if after is not None else -1.0,
    }


async def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    """Run one chaos experiment; see the module docstring."""
    report = ChaosReport()
    for kind in cfg.nemesis:
        if (reason := unavailable(kind)) is not None:
            raise ValueError(f"the {kind} nemesis is not available here: {reason}")
    lazy = cfg.lazy_fs if cfg.lazy_fs is not None else "power" in cfg.nemesis
    if lazy and (reason := power.unavailable_reason()) is not None:
        raise ValueError(f"lazy mounts are not available here: {reason}")
    if "power" in cfg.nemesis and not lazy:
        raise ValueError("the power nemesis needs the data dirs on lazy mounts")
    report.lazy_fs = lazy
    loss = PacketLoss() if "loss" in cfg.nemesis else None
    rng = random.Random(cfg.seed)
    root = cfg.out or Path(tempfile.mkdtemp(prefix="pyxos-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    pairs = [(a, b) for a in range(1, cfg.nodes + 1) for b in range(1, cfg.nodes + 1) if a != b]
    ports = dict(zip(pairs, free_ports(len(pairs)), strict=True))
    args = list(NODE_ARGS)
    if cfg.test_bug:
        args += ["--test-bug", cfg.test_bug]
    if cfg.storage:
        args += ["--storage", cfg.storage]
    tls_dir = None
    if cfg.tls:
        tls_dir = root / "tls"
        make_dev_certs(tls_dir, dict.fromkeys(range(1, cfg.nodes + 1), "127.0.0.1"))
    cluster = LocalCluster(
        cfg.nodes,
        find_base_port(cfg.nodes),
        data,
        extra_args=args,
        peer_ports=ports,
        tls_dir=tls_dir,
    )
    supply = PowerSupply(data, cluster.ids) if lazy else None
    proxies = LinkProxies()
    await proxies.start({k: ("127.0.0.1", cluster.listen_port(k)) for k in cluster.ids}, ports)
    recorder = Recorder()
    keys = [f"k{i}" for i in range(cfg.keys)]
    endpoints = cluster.endpoints()
    client_tls = None
    if tls_dir is not None:  # the harness's own checks keep the plain port of each node
        endpoints = [(cluster.host, cluster.tls_port(k)) for k in cluster.ids]
        client_tls = cluster.client_tls_context()
    try:
        if supply is not None:
            await asyncio.to_thread(supply.start)
        cluster.start()
        await asyncio.to_thread(cluster.wait_ready)
        await _until(lambda: current_leader(cluster), 20)
        stop = asyncio.Event()
        workers = [
            Worker(
                i,
                cfg.workers,
                endpoints,
                keys,
                recorder,
                random.Random(rng.getrandbits(64)),
                cfg.think,
                tls=client_tls,
            )
            for i in range(cfg.workers)
        ]
        nemesis = Nemesis(
            cluster,
            proxies,
            cfg.nemesis,
            random.Random(rng.getrandbits(64)),
            healthy=(1.0 * cfg.pace, 3.0 * cfg.pace),
            hold=(1.5 * cfg.pace, 4.0 * cfg.pace),
            loss=loss,
            power=supply,
        )
        t0 = time.monotonic()
        recorder.started = t0
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        tasks.append(asyncio.create_task(nemesis.run(stop)))
        await asyncio.sleep(cfg.duration)
        stop.set()
        await asyncio.gather(*tasks)
        report.duration_s = time.monotonic() - t0

        # Heal, recover, read everything back.
        await asyncio.to_thread(nemesis.heal_all)
        report.down_nodes = await asyncio.to_thread(_wait_all, cluster, 60.0)
        await _until(lambda: current_leader(cluster), 30)
        final = Worker(10_000, 1, endpoints, keys, recorder, random.Random(0), 0.0, tls=client_tls)
        final.process = 1_000_000
        generations = int(report.duration_s / cfg.rotate) + 1
        for key in [f"{k}:g{g}" for g in range(generations) for k in keys]:
            for _ in range(20):
                before = len(recorder.events)
                await final.op("get", key, None, [b"GET", key.encode()])
                if recorder.events[-1].type == "ok" or len(recorder.events) == before:
                    break
        await final.close()
        added = list(recorder.added)
        report.acked_unique_writes = len(added)
        up = [k for k in cluster.ids if cluster.running(k)] or [1]
        reader = redis.Redis(
            port=cluster.client_port(current_leader(cluster) or up[0]), socket_timeout=10
        )
        try:
            for start in range(0, len(added), 1000):
                batch = added[start : start + 1000]
                values = await asyncio.to_thread(reader.mget, batch)
                report.lost_acked_writes += sum(1 for v in values if v is None)
        except (redis.RedisError, OSError) as exc:
            report.down_nodes.setdefault(0, f"reading back the acknowledged writes: {exc}")

        def same() -> dict[int, str] | None:
            rows = _digests(cluster)
            if len(set(rows.values())) == 1:
                return {k: r[1] for k, r in rows.items()}
            return None

        digests = await _until(same, 30)
        report.converged = digests is not None and not report.down_nodes
        report.digests = digests or {
            k: r[1] for k, r in (await asyncio.to_thread(_digests, cluster)).items()
        }
        report.faults = [
            f.as_dict(t0) | _availability(f, recorder, report.duration_s + t0)
            for f in nemesis.faults
        ]
        faults = nemesis.faults
        if nemesis.member is not None:
            report.nemesis_errors = list(nemesis.member.errors)
    finally:
        if loss is not None:
            loss.clear()
        cluster.close()
        if supply is not None:
            await asyncio.to_thread(supply.close)
        await proxies.close()

    events = recorder.events
    report.ops = sum(1 for e in events if e.type == "invoke")
    report.ok = sum(1 for e in events if e.type == "ok")
    report.fail = sum(1 for e in events if e.type == "fail")
    report.unknown = report.ops - report.ok - report.fail
    seconds = int(report.duration_s) + 1
    per_second = [0] * seconds
    for when, kind, _ in recorder.completions:
        i = int(when - t0)
        if kind == "ok" and 0 <= i < seconds:
            per_second[i] += 1
    report.ops_per_second = per_second
    started = time.monotonic()
    result = await asyncio.to_thread(check_history, events, None, timeout_s=cfg.check_timeout)
    report.check_seconds = time.monotonic() - started
    report.checker_verdict = result.verdict
    report.linearizable = result.ok
    if not result.ok:
        report.checker_explanation = result.explain()[:4000]
    if cfg.out is not None:
        write_history(events, root / "history.jsonl")
        for k in cluster.ids:
            for name in (f"node{k}.log", f"lazyfs{k}.log"):
                if (data / name).exists():
                    shutil.copy(data / name, root / name)
        (root / "summary.json").write_text(json.dumps(report.as_dict(), indent=2))
        from pyxos.chaos.timeline import plot_timeline

        plot_timeline(recorder, faults, t0, root / "timeline.png")
        report.out = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return report


__all__ = ["ChaosConfig", "ChaosReport", "Fault", "run_chaos"]
