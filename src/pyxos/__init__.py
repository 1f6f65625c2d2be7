"""pyxos: Multi-Paxos state machine replication, and a replicated key-value service.

- :class:`Client` / :class:`AsyncClient`: talk to a pyxos cluster (exactly-once writes);
- :class:`Replicated` with :func:`command` / :func:`query`: replicate your own object;
- :class:`StateMachine`: the interface any replicated application implements.
"""

from typing import TYPE_CHECKING, Any

from pyxos.core.statemachine import StateMachine

__all__ = [
    "AsyncClient",
    "Client",
    "Replicated",
    "StateMachine",
    "UnknownOutcomeError",
    "command",
    "query",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from pyxos.client import AsyncClient, Client, UnknownOutcomeError
    from pyxos.replicated import Replicated, command, query

_LAZY = {
    "AsyncClient": "pyxos.client",
    "Client": "pyxos.client",
    "UnknownOutcomeError": "pyxos.client",
    "Replicated": "pyxos.replicated",
    "command": "pyxos.replicated",
    "query": "pyxos.replicated",
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import pyxos` stays light for the simulator and the core.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyxos' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
