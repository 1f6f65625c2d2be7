"""Node-to-node transport: authenticated, framed TCP links between the members of a cluster,
optionally inside mutual TLS (``TransportConfig.tls``).

Public API: :class:`Transport` (``start``, ``send``, ``close``, ``peer_status``, ``stats``),
its :class:`TransportConfig`, the status and counter types, and the handshake's
:class:`RejectReason`. The wire format is described in :mod:`pyxos.transport.framing`, the
authentication in :mod:`pyxos.transport.handshake`, TLS contexts and the logging TLS listener
(shared with the client and admin ports) in :mod:`pyxos.transport.tls`, and which member a
certificate names in :mod:`pyxos.transport.certnames`; :mod:`pyxos.transport.testing` has helpers
for tests and harnesses (free ports, an awaitable inbox, a hand-driven raw peer).
"""

from pyxos.transport.config import TransportConfig
from pyxos.transport.framing import PROTOCOL_VERSION
from pyxos.transport.handshake import RejectReason
from pyxos.transport.stats import PeerCounters, PeerStatus, TransportStats
from pyxos.transport.transport import Transport

__all__ = [
    "PROTOCOL_VERSION",
    "PeerCounters",
    "PeerStatus",
    "RejectReason",
    "Transport",
    "TransportConfig",
    "TransportStats",
]
