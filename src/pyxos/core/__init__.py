"""pyxos.core."""
