"""Run the linearizability checker: ``python -m pyxos.check FILE``."""

from pyxos.check.cli import main

raise SystemExit(main())
