"""pyxos.client."""
