"""How fast each storage engine (LMDB, SQLite) persists batches and recovers a long log.

Measures, in a fresh data dir (``--dir``, default a new directory under the system temp
dir; make sure that is a real disk, not a tmpfs, or fsync costs nothing):

- synced ``Storage.write`` calls per second with one 100-byte entry per call;
- synced ``Storage.write`` calls per second with a batch of 64 entries of 4 KiB;
- ``Storage.load`` time for 1,000,000 small entries (after a close and reopen);
- for context: a bare ``write + fdatasync`` of 100 bytes per second on the same file
  system, and LMDB with ``sync=True`` (two syncs per commit, the integrity-safe mode that
  ``Storage`` trades for one sync per batch).

    .venv/bin/python bench/storage_bench.py [--dir DIR] [--small 2000] [--batches 300]
                                            [--entries 1000000] [--engines lmdb,sqlite]
                                            [--keep]

The ``Storage`` measurements run once per engine (``--engines``).

Prints one human line per measurement and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lmdb
from benchlib import filesystem_of  # bench/ is on sys.path when run as a script

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist
from pyxos.storage import Storage, open_storage

BALLOT = Ballot(3, 1)
ENGINE = "lmdb"
"""The engine ``open_store`` opens; ``main`` sets it for each round."""


def open_store(path: Path) -> Storage:
    return open_storage(ENGINE, path, node_id=1, cluster_id="bench", members=(1, 2, 3))


def synced_writes(path: Path, calls: int, per_call: int, size: int) -> dict[str, float]:
    """``calls`` synced writes of ``per_call`` entries of ``size`` bytes each."""
    payload = os.urandom(size)
    latencies: list[float] = []
    with open_store(path) as store:
        slot = 0
        for _ in range(min(50, calls)):  # warm up: page cache, file growth
            slot += 1
            store.write(Persist(entries=[SlotValue(slot, BALLOT, (payload,))], must_sync=True))
        syncs_before = store.syncs
        start = time.perf_counter()
        for _ in range(calls):
            entries = []
            for _ in range(per_call):
                slot += 1
                entries.append(SlotValue(slot, BALLOT, (payload,)))
            t0 = time.perf_counter()
            store.write(Persist(promised=BALLOT, entries=entries, must_sync=True))
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        assert store.syncs - syncs_before == calls, "one sync per write call"
        sync_mean = store.sync_seconds_total / store.syncs
    latencies.sort()
    return {
        "writes_per_s": calls / elapsed,
        "entries_per_s": calls * per_call / elapsed,
        "mb_per_s": calls * per_call * size / elapsed / 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "mean_sync_ms": sync_mean * 1e3,
    }


def load_time(path: Path, entries: int, batch: int = 10_000) -> dict[str, float]:
    """Write ``entries`` small entries (synced once at the end), reopen, time ``load``."""
    value = (b"SET key:%08d 16-byte-value...",)
    fill_start = time.perf_counter()
    with open_store(path) as store:
        for first in range(1, entries + 1, batch):
            last = min(first + batch, entries + 1)
            store.write(
                Persist(
                    entries=[SlotValue(s, BALLOT, value, True) for s in range(first, last)],
                    commit_index=last - 1,
                    must_sync=last > entries,
                )
            )
    fill = time.perf_counter() - fill_start
    t0 = time.perf_counter()
    store = open_store(path)
    opened = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        state, _ = store.load()
        loaded = time.perf_counter() - t1
        assert len(state.entries) == entries and state.commit_index == entries
    finally:
        store.close()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {
        "entries": entries,
        "fill_s": fill,
        "open_s": opened,
        "load_s": loaded,
        "data_mb": size / 1e6,
    }


def bare_fdatasync(path: Path, calls: int) -> float:
    """Appends of 100 bytes, each followed by fdatasync: the floor for any synced write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        data = b"x" * 100
        for _ in range(50):
            os.write(fd, data)
            os.fdatasync(fd)
        start = time.perf_counter()
        for _ in range(calls):
            os.write(fd, data)
            os.fdatasync(fd)
        return calls / (time.perf_counter() - start)
    finally:
        os.close(fd)


def lmdb_sync_true(path: Path, calls: int) -> float:
    """Commits per second of raw LMDB with its default, per-commit durable syncing."""
    path.mkdir()
    env = lmdb.open(str(path), map_size=1 << 30, sync=True, metasync=True)
    try:
        for i in range(50 + calls):
            if i == 50:
                start = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), b"x" * 100)
        return calls / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="where to create the data dirs")
    parser.add_argument("--small", type=int, default=2000, help="synced 1x100 B writes")
    parser.add_argument("--batches", type=int, default=300, help="synced 64x4 KiB writes")
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries for load()")
    parser.add_argument("--engines", default="lmdb,sqlite", help="storage engines to measure")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="pyxos-storage-bench-", dir=args.dir))
    results: dict[str, Any] = {"dir": str(base), "filesystem": filesystem_of(base)}
    print(f"data in {base} on {results['filesystem']}, {os.cpu_count()} CPUs")
    try:
        results["fdatasync_per_s"] = bare_fdatasync(base / "bare", args.small)
        print(f"bare write+fdatasync (100 B):       {results['fdatasync_per_s']:8.0f} /s")
        results["lmdb_sync_true_commits_per_s"] = lmdb_sync_true(base / "raw", args.small)
        print(
            f"raw LMDB sync=True commit (100 B):  {results['lmdb_sync_true_commits_per_s']:8.0f} /s"
        )

        global ENGINE
        for engine in args.engines.split(","):
            ENGINE = engine
            results[engine] = one = {}
            print(f"--- {engine}")
            small = synced_writes(base / f"{engine}-small", args.small, 1, 100)
            one["write_1x100B"] = small
            print(
                f"Storage.write 1 x 100 B, synced:    {small['writes_per_s']:8.0f} writes/s  "
                f"(p50 {small['p50_ms']:.2f} ms, p99 {small['p99_ms']:.2f} ms, "
                f"sync {small['mean_sync_ms']:.2f} ms)"
            )

            big = synced_writes(base / f"{engine}-batch", args.batches, 64, 4096)
            one["write_64x4KiB"] = big
            print(
                f"Storage.write 64 x 4 KiB, synced:   {big['writes_per_s']:8.0f} writes/s  "
                f"({big['entries_per_s']:.0f} entries/s, {big['mb_per_s']:.1f} MB/s, "
                f"p50 {big['p50_ms']:.2f} ms, p99 {big['p99_ms']:.2f} ms)"
            )

            loaded = load_time(base / f"{engine}-load", args.entries)
            one["load"] = loaded
            print(
                f"Storage.load of {loaded['entries']:,} entries:    {loaded['load_s']:8.2f} s  "
                f"(open {loaded['open_s'] * 1e3:.1f} ms, fill {loaded['fill_s']:.1f} s, "
                f"{loaded['data_mb']:.0f} MB)"
            )
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
