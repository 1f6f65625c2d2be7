"""``timeline.png``: throughput and latency over time, with the fault windows shaded."""

from __future__ import annotations

from pathlib import Path

from pyxos.chaos.nemesis import Fault
from pyxos.chaos.workload import Recorder

_COLORS = {
    "kill": "tab:red",
    "pause": "tab:orange",
    "partition": "tab:purple",
    "delay": "tab:olive",
    "member": "tab:cyan",
}


def plot_timeline(recorder: Recorder, faults: list[Fault], t0: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max((t for t, _, _ in recorder.completions), default=t0) - t0
    seconds = int(end) + 1
    counts = {kind: [0] * seconds for kind in ("ok", "fail", "info")}
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    for when, kind, latency in recorder.completions:
        i = int(when - t0)
        if 0 <= i < seconds:
            counts[kind][i] += 1
            if kind == "ok":
                latencies[i].append(latency * 1000)
    p99 = [sorted(v)[int(0.99 * (len(v) - 1))] if v else 0.0 for v in latencies]
    xs = list(range(seconds))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.bar(xs, counts["ok"], width=1.0, color="tab:green", label="ok", align="edge")
    top.bar(
        xs,
        counts["fail"],
        width=1.0,
        bottom=counts["ok"],
        color="tab:gray",
        label="fail",
        align="edge",
    )
    stacked = [a + b for a, b in zip(counts["ok"], counts["fail"], strict=True)]
    top.bar(
        xs,
        counts["info"],
        width=1.0,
        bottom=stacked,
        color="tab:red",
        label="unknown",
        align="edge",
    )
    top.set_ylabel("operations / s")
    top.legend(loc="upper right")
    bottom.plot([x + 0.5 for x in xs], p99, color="tab:blue", label="p99 latency of ok ops")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right")
    seen: set[str] = set()
    for fault in faults:
        start, stop = fault.start - t0, (fault.end or fault.start) - t0
        color = _COLORS.get(fault.kind, "tab:gray")
        for ax in (top, bottom):
            label = fault.kind if ax is top and fault.kind not in seen else None
            ax.axvspan(start, stop, color=color, alpha=0.15, label=label)
        seen.add(fault.kind)
    top.legend(loc="upper right")
    top.set_title("pyxos chaos: throughput and latency; shaded: faults")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
