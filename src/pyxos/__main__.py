"""``python -m pyxos`` is the ``pyxos`` command."""

from pyxos.cli import main

main()
