"""pyxos.resp: the Redis protocol (RESP2 and RESP3) codec, with no I/O and no pyxos imports.

It sits at the bottom of the layering, beside ``core``: the key-value state machine
(``kv``) encodes replies with it, the server (``server``) parses requests and encodes
replies with it, and the client (``client``) encodes commands and decodes replies with it.

- :mod:`~pyxos.resp.replies`: reply values (:class:`~pyxos.resp.replies.SimpleString`,
  :class:`~pyxos.resp.replies.ErrorReply`, ...), their RESP2/RESP3 encodings, and a decoder;
- :mod:`~pyxos.resp.requests`: the incremental request parser (RESP arrays and inline
  commands, with Redis's exact protocol errors) and :func:`~pyxos.resp.requests.encode_command`;
- :mod:`~pyxos.resp.inline`: Redis's quoting rules for inline commands;
- :mod:`~pyxos.resp.integers`: Redis's strict integer rule (``string2ll``).
"""
