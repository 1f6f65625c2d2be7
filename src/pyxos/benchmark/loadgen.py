"""The load generator: worker processes, each running one :class:`~pyxos.benchmark.worker.Worker`.

``pyxos bench`` (:mod:`pyxos.benchmark.runner`) spawns the processes and reads their
progress from a shared array; each process runs one event loop (uvloop when installed) with
many connections. The pieces live apart: what a worker is asked to do and the requests it
sends in :mod:`pyxos.benchmark.plan`, the hot path in :mod:`pyxos.benchmark.worker`, the
preload that writes every key first in :mod:`pyxos.benchmark.preload`; they are
re-exported here, where they were first defined.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from pyxos.benchmark import plan
from pyxos.benchmark.plan import *  # noqa: F403 (re-exported, see __all__)
from pyxos.benchmark.plan import PHASE_DONE, SHARED_HEADER, WorkerPlan
from pyxos.benchmark.preload import preload
from pyxos.benchmark.worker import Worker

__all__ = ["Worker", "preload", "run_worker", "worker_process"]
__all__ += plan.__all__


def run_worker(
    plan: WorkerPlan,
    start_at_ns: Callable[[], int],
    stop_requested: Callable[[], bool],
    report: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run one worker to completion on a fresh event loop (uvloop when installed)."""

    async def main() -> dict[str, Any]:
        return await Worker(plan, report).run(start_at_ns, stop_requested)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main())
    result: dict[str, Any] = uvloop.run(main())
    return result


def worker_process(plan: WorkerPlan, shared: Any, results: Any) -> None:
    """Entry point of a spawned worker process.

    ``shared`` is a ``multiprocessing`` array of int64: slot 0 is the start time (monotonic
    ns, 0 until the parent sets it), slot 1 is set when the parent wants the measurement to
    end early (Ctrl-C); worker ``i`` publishes phase, completed ops and errors in slots
    ``2 + 3i .. 4 + 3i``. The result (or an error string) goes to ``results``. Workers
    ignore SIGINT: the parent decides (a Ctrl-C in a terminal reaches the whole group).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    base = SHARED_HEADER + 3 * plan.index

    def report(phase: int, ops: int, errors: int) -> None:
        shared[base], shared[base + 1], shared[base + 2] = phase, ops, errors

    try:
        result = run_worker(plan, lambda: int(shared[0]), lambda: bool(shared[1]), report)
    except BaseException as exc:  # reported to the parent, which decides
        shared[base] = PHASE_DONE
        results.put((plan.index, f"worker {plan.index} (pid {os.getpid()}) failed: {exc!r}"))
        return
    results.put((plan.index, result))
