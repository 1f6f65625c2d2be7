"""``python -m pyxos.benchmark``: the same command as ``pyxos bench``."""

from pyxos.benchmark.cli import bench_command

if __name__ == "__main__":
    bench_command(prog_name="python -m pyxos.benchmark")
