"""pyxos: Multi-Paxos state machine replication, and a replicated key-value service."""

from pyxos.core.statemachine import StateMachine

__all__ = ["StateMachine"]
__version__ = "0.1.0"
