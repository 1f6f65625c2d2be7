"""The ``pyxos bench`` click command (also ``python -m pyxos.benchmark``)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pyxos.benchmark.runner import DEFAULT_ENDPOINTS, main_bench


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoints",
    default=DEFAULT_ENDPOINTS,
    show_default=True,
    help="RESP servers, comma-separated; connections are spread over them round-robin.",
)
@click.option("--clients", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--value-size", default=100, show_default=True, type=click.IntRange(min=0))
@click.option("--ratio", default="1:1", show_default=True, help="GET:SET weights, e.g. 0:1.")
@click.option(
    "--pipeline",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests each connection keeps in flight.",
)
@click.option("--keys", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, last line.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Load-generator processes (the connections are split between them).",
)
@click.option("--warmup", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Open loop: offer this many ops/s in total (0: closed loop).",
)
@click.option("--leader", is_flag=True, help="Send everything to the pyxos leader only.")
@click.option("--password", envvar="PYXOS_PASSWORD", help="AUTH with this password.")
@click.option("--seed", type=int, help="Seed of the key and operation choice.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option(
    "--write",
    default="set",
    show_default=True,
    type=click.Choice(["set", "hset", "lpush", "sadd", "zadd"]),
    help="The write of the mix: SET key v, HSET key f v, LPUSH key v, SADD key v, ZADD key 1 v.",
)
def bench_command(as_json: bool, no_progress: bool, **options: Any) -> None:
    """Closed-loop (or open-loop) load over many connections; throughput and latency.

    Keys are drawn uniformly from KEYS keys (preloaded with MSET when the mix has GETs);
    prints throughput and p50/p99/p99.9 latency overall and per operation, and how busy
    the load generator itself was. One Ctrl-C ends the measurement early and still reports
    it. Exit status 0 when operations completed without errors.
    """
    sys.exit(main_bench(as_json=as_json, progress=not no_progress, **options))
