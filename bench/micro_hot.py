"""Per-call cost of the functions on a write's hot path, in one process, for comparing builds.

    PYTHONPATH=SRC .venv/bin/python bench/micro_hot.py [--json]

``SRC`` is the tree (or installed build) to time. Each line is the best of five loops: the
request parser on a pipeline of 16 SETs, the RESP encoders, the command classifier, and the
state machine applying a SET (decode included) and answering a GET. It is what the A/B of a
compiled build (bench/README.md, "mypyc") was read against: whole-cluster numbers say
whether a build pays, these say where.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from pyxos.kv import classify
from pyxos.kv.request import encode_request
from pyxos.kv.statemachine import KVStateMachine
from pyxos.resp.replies import encode_resp2, encode_resp3
from pyxos.resp.requests import RequestParser

SET = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$100\r\n" + b"x" * 100 + b"\r\n"


def best_us(fn: Callable[[], object], n: int) -> float:
    """The fastest of five loops of ``n`` calls, in microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return round(best, 3)


def main() -> None:
    parser = RequestParser()
    pipeline = SET * 16
    argv = [b"SET", b"key:000000012345", b"x" * 100]
    kv = KVStateMachine()
    seq = iter(range(1, 1 << 40))

    def apply() -> None:
        kv.apply(encode_request(argv, 7, next(seq), 0, 0))

    results = {
        "parse 16 pipelined SETs": best_us(lambda: parser.feed(pipeline), 20_000),
        "encode_resp2 +OK": best_us(lambda: encode_resp2("OK"), 200_000),
        "encode_resp2 nested array": best_us(
            lambda: encode_resp2([b"a", 1, None, [b"x", b"y"]]), 100_000
        ),
        "encode_resp3 map": best_us(lambda: encode_resp3({b"a": 1, b"b": [b"x"]}), 100_000),
        "classify SET": best_us(lambda: classify(argv), 200_000),
        "encode + apply SET": best_us(apply, 50_000),
        "read GET": best_us(lambda: kv.read([b"GET", b"key:000000012345"], 2, 0), 100_000),
    }
    if "--json" in sys.argv:
        print(json.dumps(results))
        return
    for name, us in results.items():
        print(f"{name:28s} {us:8.3f} us")


if __name__ == "__main__":
    main()
