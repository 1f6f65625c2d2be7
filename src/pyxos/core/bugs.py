"""Deliberate protocol bugs, all off in a real build: they prove that the checkers fail.

A bug is a flag on one object handed to the replica and its driver at construction, read
where the broken behaviour happens: a refactor that moves the code moves the flag with
it, and the tests that run each bug (simulator, chaos) fail loudly if it stops biting.
``pyxos.faults`` names them for ``pyxos serve --test-bug`` and the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProtocolBugs:
    """Which rules of the protocol this replica breaks on purpose (none by default)."""

    accept_below_promise: bool = False
    """The acceptor forgets to compare a proposal's ballot with its promise."""
    skip_reproposal: bool = False
    """A new leader ignores every value phase 1 found, its own included (fills no-ops)."""
    trust_any_chosen: bool = False
    """Learn from any ``Chosen``, in any role, ignoring its ballot; and propose over a
    slot at or below the commit index (the review's stale-leader hole)."""
    reads_without_quorum: bool = False
    """Answer a read at the local commit index, without a quorum round."""
    apply_out_of_order: bool = False
    """Hand chosen slots to the state machine in reverse order."""
    ack_before_fsync: bool = False
    """The driver lets Promises and Accepteds leave before their write is durable."""
    skip_config_prepare: bool = False
    """A leader proposes in the slots of a configuration made while it leads without
    first running phase 1 with a quorum of that configuration."""
    change_at_once: bool = False
    """A leader counts every slot's acceptances with the newest configuration it knows,
    as if a change took effect the moment it is known (no alpha window)."""

    @property
    def any(self) -> bool:
        """Whether any bug is on."""
        return any(getattr(self, name) for name in self.__slots__)


NO_BUGS = ProtocolBugs()
