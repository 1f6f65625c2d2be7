"""The Multi-Paxos protocol as a pure, deterministic state machine (sans-I/O).

Nothing in this package touches sockets, files, clocks, threads or global randomness; the
simulator and the asyncio runtime drive the same code. Start at :class:`Replica`.
"""

from pyxos.core.ballot import ZERO, Ballot
from pyxos.core.config import Config, ConfigError
from pyxos.core.messages import NOOP, Message, SlotValue, Value, decode, encode
from pyxos.core.ready import HardState, Persist, Ready, SnapshotMeta
from pyxos.core.replica import Options, Replica, Rng, Role, UsageError
from pyxos.core.statemachine import StateMachine

__all__ = [
    "NOOP",
    "ZERO",
    "Ballot",
    "Config",
    "ConfigError",
    "HardState",
    "Message",
    "Options",
    "Persist",
    "Ready",
    "Replica",
    "Rng",
    "Role",
    "SlotValue",
    "SnapshotMeta",
    "StateMachine",
    "UsageError",
    "Value",
    "decode",
    "encode",
]
