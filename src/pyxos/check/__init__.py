"""pyxos.check."""
