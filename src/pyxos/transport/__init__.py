"""pyxos.transport."""
