"""``pyxos bench``: a closed- or open-loop load generator for anything that speaks RESP.

    python -m pyxos.benchmark --endpoints 127.0.0.1:6380,127.0.0.1:6381 --clients 64 \
        --duration 10 --value-size 100 --ratio 0:1 [--pipeline P] [--json]

:func:`main_bench` is the command's body; :func:`run_bench` returns the summary as a dict
(keys ``ops``, ``ops_per_s``, ``p50_ms``, ``p99_ms``, ``p999_ms``, ``errors``, ``per_op``,
``timeline``, ``generator``, ``config``); :data:`bench_command` is the click command.
"""

from pyxos.benchmark.runner import BenchError, main_bench, run_bench

__all__ = ["BenchError", "bench_command", "main_bench", "run_bench"]


def __getattr__(name: str) -> object:
    if name == "bench_command":
        from pyxos.benchmark.cli import bench_command

        return bench_command
    raise AttributeError(f"module 'pyxos.benchmark' has no attribute {name!r}")
