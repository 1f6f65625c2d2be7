"""The knobs of a replica, its roles, the randomness it is given and what it counts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Rng(Protocol):
    """The randomness a replica needs; ``random.Random(seed)`` satisfies it."""

    def randrange(self, start: int, stop: int, /) -> int: ...


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRECANDIDATE = "precandidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Options:
    """Tuning knobs, in ticks and counts. Safety never depends on any of them."""

    election_ticks: int = 10
    """Minimum election timeout; the actual one is drawn from [E, 2E)."""
    heartbeat_ticks: int = 2
    window: int = 256
    """Most slots a leader keeps in flight (proposed, not yet chosen)."""
    busy_batch: int = 64
    """While slots are in flight, a new one opens only once this many commands wait.

    Adaptive batching: an idle leader proposes a lone command at once, but under load
    commands gather behind the slot in flight instead of each trickle taking a slot of its
    own. Every slot costs each node a message, a write and an fsync, so on a busy machine
    fewer, fuller slots carry more commands per second (bench/README.md measures it).
    """
    max_batch_commands: int = 4096
    max_batch_bytes: int = 1 << 20
    max_pending: int = 100_000
    """Commands queued for a slot before ``propose`` starts refusing (back-pressure)."""
    retransmit_ticks: int = 4
    max_backoff_exponent: int = 4
    catchup_batch: int = 256
    """Most slots in one catch-up message."""
    max_promise_entries: int = 4096
    """A promise omits chosen slots beyond this many; the candidate catches up instead."""
    change_delay: int = 32
    """A membership change chosen in slot ``i`` governs slots from ``i + change_delay``
    (and a leader keeps at most this many slots open). Recorded when the cluster is
    founded: every node of a cluster uses the founding value, whatever it is given later."""
    transfer_ticks: int = 30
    """How long a leader transfer may take before the leader gives up and goes on."""

    def __post_init__(self) -> None:
        if self.election_ticks < 2 or self.heartbeat_ticks < 1:
            raise ValueError("election_ticks must be >= 2 and heartbeat_ticks >= 1")
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError("heartbeat_ticks must be below election_ticks")
        if self.window < 1 or self.max_batch_commands < 1 or self.catchup_batch < 1:
            raise ValueError("window, max_batch_commands and catchup_batch must be >= 1")
        if self.busy_batch < 1:
            raise ValueError("busy_batch must be >= 1")
        if self.change_delay < 1:
            raise ValueError("change_delay must be >= 1")


COVERAGE_POINTS = (
    "became_learner",
    "became_voter",
    "candidate_behind_asks_snapshot",
    "candidate_learns_chosen",
    "readded_teaches",
    "leader_skips_chosen",
    "prepare_taught_chosen",
    "catchup_run_sent",
    "change_filled_with_noops",
    "change_proposed",
    "change_refused",
    "check_quorum_steps_down",
    "chosen_deposes_leader",
    "chosen_learned",
    "config_prepare_done",
    "config_prepare_sent",
    "elected",
    "holes_filled_with_noops",
    "join_refused",
    "join_registered",
    "join_sent",
    "leader_ignores_chosen",
    "leader_steps_aside",
    "learned_removed",
    "learner_auto_promoted",
    "nonvoter_ack",
    "not_member_told",
    "prevote_denied",
    "prevote_granted",
    "promise_omits_chosen",
    "read_index_forwarded",
    "read_round_confirmed",
    "reject_sent",
    "rejected_backs_off",
    "retransmitted",
    "snapshot_installed",
    "snapshot_request_received",
    "snapshot_sent_to_lagger",
    "transfer_campaign",
    "transfer_started",
    "transfer_timed_out",
)
"""The notable paths ``Replica.coverage`` counts; a correct cluster under the simulator's
weather reaches every one (a test checks it). ``propose_conflicts_chosen`` is counted too,
but only a broken proposer can reach it."""
