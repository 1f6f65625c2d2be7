"""Every deliberately broken build, by name: one registry for the simulator, the runtime
and ``pyxos serve --test-bug``.

Each bug breaks one rule a correct node keeps, to prove that a checker fails when it
must: the simulator's end-to-end oracle, the chaos tester's linearizability and
lost-write checks. A bug is data (:class:`Bug`), handed in at construction: the replica
and its driver read :class:`~pyxos.core.bugs.ProtocolBugs`, the storage and the shell the
rest. Nothing here is ever on in a real build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyxos.core.ballot import ZERO
from pyxos.core.bugs import NO_BUGS, ProtocolBugs
from pyxos.core.ready import HardState, Standing


@dataclass(frozen=True, slots=True)
class Bug:
    """One named bug and where it bites."""

    name: str
    doc: str
    protocol: ProtocolBugs = field(default=NO_BUGS)
    forget_promises: bool = False
    """Storage: a restart loses the promise (keeps the acceptances)."""
    new_disks_vote: bool = False
    """Storage: a new data dir votes at once, without registration (the review's
    disk-loss hole)."""
    skip_fsync: bool = False
    """Storage: commits are never fsynced (SQLite ``synchronous=OFF``, LMDB without sync):
    everything is written and acknowledged, and only a power cut, not a process crash,
    loses it."""
    slow_writes: float = 0.0
    """Shell: seconds each write waits before it reaches the disk, so a crash in between
    loses what was already acknowledged (with ``ack_before_fsync``)."""
    local_expiry: bool = False
    """Key-value store, in the simulator's ``kv-expiry`` workload only: a replica serving a
    read deletes a key that is past its time by its own clock, instead of first putting a
    clock tick through the log (Redis's lazy expiry, done locally on a replica)."""


BUGS: dict[str, Bug] = {
    bug.name: bug
    for bug in (
        Bug(
            "accepts-below-promise",
            "an acceptor accepts proposals below its promise",
            ProtocolBugs(accept_below_promise=True),
        ),
        Bug(
            "forgets-promise",
            "an acceptor forgets its promise when it restarts",
            forget_promises=True,
        ),
        Bug(
            "applies-out-of-order",
            "a learner applies chosen slots in reverse order",
            ProtocolBugs(apply_out_of_order=True),
        ),
        Bug(
            "skip-reproposal",
            "a new leader ignores the values phase 1 found and fills no-ops",
            ProtocolBugs(skip_reproposal=True),
        ),
        Bug(
            "stale-reads",
            "reads are answered at the local commit index, without a quorum round",
            ProtocolBugs(reads_without_quorum=True),
        ),
        Bug(
            "trusts-any-chosen",
            "a node learns chosen values from anyone in any role, ignoring the ballot",
            ProtocolBugs(trust_any_chosen=True),
        ),
        Bug(
            "new-disks-vote",
            "a node with a new (wiped) data dir votes at once",
            new_disks_vote=True,
        ),
        Bug(
            "skip-fsync",
            "the storage engine never fsyncs: only a power cut shows it",
            skip_fsync=True,
        ),
        Bug(
            "expires-by-local-clock",
            "a replica expires a key on a read by its own clock, not through the log",
            local_expiry=True,
        ),
        Bug(
            "skips-config-prepare",
            "a leader proposes in a new configuration's slots without its quorum's promises",
            ProtocolBugs(skip_config_prepare=True),
        ),
        Bug(
            "change-at-once",
            "a leader counts votes with the newest configuration, ignoring the alpha window",
            ProtocolBugs(change_at_once=True),
        ),
        Bug(
            "ack-before-fsync",
            "Promises and Accepteds leave before their write is durable",
            ProtocolBugs(ack_before_fsync=True),
            slow_writes=0.2,
        ),
    )
}


def bug_named(name: str) -> Bug:
    """The bug called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return BUGS[name]
    except KeyError:
        known = ", ".join(sorted(BUGS))
        raise ValueError(f"unknown test bug {name!r}; known: {known}") from None


def bug_state(bug: Bug, state: HardState) -> HardState:
    """What a node restarting with ``bug`` believes its disk holds."""
    if bug.forget_promises:
        state.promised = ZERO
    if bug.new_disks_vote and state.standing is Standing.JOINING:
        state.standing = Standing.VOTER
    return state
