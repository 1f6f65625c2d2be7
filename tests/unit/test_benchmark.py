"""The load generator behind ``pyxos bench``: its JSON contract against a real 1-node cluster.

Nothing here asserts speed: only that the run completes, counts what it did and reports it
in the documented shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyxos.benchmark import main_bench
from pyxos.benchmark.runner import format_summary
from pyxos.benchmark.stats import parse_ratio, percentile
from pyxos.launch.local_cluster import LocalCluster, find_base_port

CONTRACT = ("ops", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "errors")


def test_parse_ratio() -> None:
    assert parse_ratio("1:1") == 0.5
    assert parse_ratio("0:1") == 0.0
    assert parse_ratio("1:0") == 1.0
    assert parse_ratio("9:1") == pytest.approx(0.9)
    for bad in ("", "1", "a:b", "0:0", "-1:2"):
        with pytest.raises(ValueError):
            parse_ratio(bad)


def test_percentile_nearest_rank() -> None:
    ns = [i * 1_000_000 for i in range(1, 101)]  # 1..100 ms
    assert percentile(ns, 50) == 50.0
    assert percentile(ns, 99) == 99.0
    assert percentile(ns, 99.9) == 100.0
    assert percentile([], 50) == 0.0


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main_bench("127.0.0.1:1", 1, 1.0, 10, "x:y", 1, True, 10, progress=False)
    assert code == 2
    assert "error" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.integration
def test_bench_json_contract_against_one_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = LocalCluster(1, find_base_port(1), tmp_path)
    cluster.start()
    try:
        cluster.wait_ready()
        endpoint = f"127.0.0.1:{cluster.client_port(1)}"
        code = main_bench(
            endpoint, 4, 2.0, 32, "1:1", 2, True, 100, warmup=0.5, progress=False, seed=7
        )
    finally:
        cluster.close()
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    for key in CONTRACT:
        assert key in result, key
    assert isinstance(result["ops"], int) and result["ops"] > 0
    assert result["errors"] == 0
    assert code == 0
    assert result["ops_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["p999_ms"]
    assert set(result["per_op"]) == {"get", "set"}
    assert sum(r["ops"] for r in result["per_op"].values()) == result["ops"]
    assert result["config"]["clients"] == 4
    assert result["config"]["pipeline"] == 2
    # The human report came first and names the same throughput.
    assert format_summary(result).splitlines()[0] in out


def test_every_write_of_the_mix_is_a_well_formed_command() -> None:
    from pyxos.benchmark.loadgen import WRITE_HEADS, make_value
    from pyxos.resp.requests import RequestParser

    value = make_value(100)
    tail = b"$100\r\n%s\r\n" % value
    expected = {
        "set": [b"SET", b"key:000000000042", value],
        "hset": [b"HSET", b"key:000000000042", b"f", value],
        "lpush": [b"LPUSH", b"key:000000000042", value],
        "sadd": [b"SADD", b"key:000000000042", value],
        "zadd": [b"ZADD", b"key:000000000042", b"1", value],
    }
    assert set(WRITE_HEADS) == set(expected)
    for write, head in WRITE_HEADS.items():
        parser = RequestParser()
        assert parser.feed(head % 42 + tail) == [expected[write]], write
