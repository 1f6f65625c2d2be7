"""pyxos.server: the Redis-protocol client port and the admin HTTP port of one node.

How a node process is put together from these (and started) is :mod:`pyxos.launch`.
"""
