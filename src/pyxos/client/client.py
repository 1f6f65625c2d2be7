"""The native Python clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both speak RESP to any node and add what a generic Redis client cannot:

- leader discovery: they learn which endpoint leads (``INFO paxos``) and send there,
  saving the follower-to-leader hop, and move on when it fails;
- exactly-once writes: every write runs inside a session, ``RID <client> <seq> ...``; a
  retry after a timeout or a lost connection reuses the same ``seq``, so the cluster
  applies it at most once and returns the original reply;
- honest errors: :class:`UnknownOutcomeError` when the write may or may not have been
  applied (every retry timed out), :class:`UnavailableError` when it was definitely not,
  :class:`ResponseError` for a command the server refused.

The pieces: :mod:`~pyxos.client.blocking_client` and :mod:`~pyxos.client.async_client`,
over :mod:`~pyxos.client.base` (settings and typed helpers), :mod:`~pyxos.client.discovery`
(endpoints and the leader) and :mod:`~pyxos.client.errors`; re-exported here.
"""

from pyxos.client.async_client import AsyncClient
from pyxos.client.blocking_client import Client
from pyxos.client.discovery import Endpoint, parse_endpoints
from pyxos.client.errors import ClientError, ResponseError, UnavailableError, UnknownOutcomeError

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Endpoint",
    "ResponseError",
    "UnavailableError",
    "UnknownOutcomeError",
    "parse_endpoints",
]
