"""pyxos.launch: starting nodes, as one process or as a cluster of processes on this machine.

Above ``server`` and ``client`` in the layering and below ``cli``, ``chaos`` and the
benchmark: it puts the pieces together rather than being one of them.

- :mod:`~pyxos.launch.process`: one node process (``pyxos serve``): settings from flags
  and TOML, the replica, its client and admin ports, signals, exit statuses;
- :mod:`~pyxos.launch.tls_settings`: the TLS part of those settings;
- :mod:`~pyxos.launch.local_cluster`: a cluster of ``pyxos serve`` processes, with the port
  layout, used by ``pyxos cluster``, the demo, chaos runs, benchmarks and tests;
- :mod:`~pyxos.launch.demo`: ``pyxos demo``, a leader killed mid-workload and a verdict.
"""
