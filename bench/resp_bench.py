"""How fast the RESP request parser takes pipelined redis-benchmark-style SETs.

.venv/bin/python bench/resp_bench.py [--commands 200000]
"""

from __future__ import annotations

import argparse
import time

from pyxos.resp.requests import RequestParser, encode_command


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200_000)
    args = ap.parse_args()
    n = args.commands
    data = b"".join(encode_command([b"SET", b"key:%012d" % i, b"xxx"]) for i in range(n))
    for label, size in (("one command per feed", 0), ("16 KiB chunks", 16384)):
        if size:
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
        else:
            one = encode_command([b"SET", b"key:000000000001", b"xxx"])
            chunks = [one] * n
        best = float("inf")
        for _ in range(3):
            parser = RequestParser()
            start = time.perf_counter()
            count = sum(len(parser.feed(c)) for c in chunks)
            best = min(best, time.perf_counter() - start)
            assert count == n
        print(f"{label:>24}: {n / best:,.0f} commands/s")


if __name__ == "__main__":
    main()
