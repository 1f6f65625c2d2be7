"""pyxos.storage."""
