"""pyxos.server."""
