"""pyxos.kv."""
