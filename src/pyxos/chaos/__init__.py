"""pyxos.chaos."""
