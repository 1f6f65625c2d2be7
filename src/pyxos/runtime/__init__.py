"""pyxos.runtime."""
