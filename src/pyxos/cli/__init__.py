"""The ``pyxos`` command line.

Every ``--json`` prints one JSON object as the last line of output, and every command's
exit status is 0 only when everything it checked holds. The commands live by purpose in
:mod:`~pyxos.cli.nodes` (serve, cluster, status), :mod:`~pyxos.cli.members` (member,
leader), :mod:`~pyxos.cli.checks` (sim, chaos, check) and :mod:`~pyxos.cli.tools` (demo,
certs); ``bench`` is
:mod:`pyxos.benchmark.cli`'s.
"""

from __future__ import annotations

import click

from pyxos.benchmark.cli import bench_command
from pyxos.cli.checks import chaos, check, sim
from pyxos.cli.members import leader, member
from pyxos.cli.nodes import cluster, serve, status
from pyxos.cli.tools import certs, demo

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pyxos")
def main() -> None:
    """pyxos: Multi-Paxos state machine replication and a replicated key-value store."""


for _command in (sim, serve, cluster, status, member, leader, chaos, check, demo, certs):
    main.add_command(_command)
main.add_command(bench_command, "bench")

if __name__ == "__main__":
    main()
