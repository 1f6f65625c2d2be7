"""Every message one replica sends another.

Names follow the Paxos paper (Prepare 1a, Promise 1b, Propose 2a, Accepted 2b) plus what a
running system needs: NACKs, commit notices on heartbeats, catch-up, forwarding, read index
and pre-votes. Messages are msgspec structs tagged by a short name, so the transport encodes
the whole union with one msgpack encoder and rejects unknown kinds on decode.

A value is a batch of client commands (``tuple[bytes, ...]``); the empty batch is a no-op.
"""

from __future__ import annotations

import msgspec

from pyxos.core.ballot import ZERO, Ballot

Value = tuple[bytes, ...]
"""A batch of opaque client commands; ``()`` is the no-op a new leader fills holes with."""

NOOP: Value = ()


class SlotValue(msgspec.Struct, frozen=True, array_like=True):
    """What an acceptor holds for one slot: the ballot it accepted at, and the value.

    ``chosen`` marks a value the acceptor knows to be chosen (learned from a commit or a
    catch-up), which a new leader may adopt without comparing ballots.
    """

    slot: int
    ballot: Ballot
    value: Value
    chosen: bool = False


class PreVote(msgspec.Struct, frozen=True, tag="pv", array_like=True):
    """ "Would you promise ``ballot`` if I asked?" Binds the receiver to nothing.

    A node that lost contact with the leader asks this first, so that a node cut off from
    the cluster never raises the ballot everyone else must then beat (etcd's pre-vote).
    """

    src: int
    ballot: Ballot


class PreVoteReply(msgspec.Struct, frozen=True, tag="pvr", array_like=True):
    """The answer to :class:`PreVote`; ``granted`` is false while a live leader is known.

    ``promised`` lets the asker pick a ballot that the real Prepare will not lose on.
    """

    src: int
    ballot: Ballot
    granted: bool
    promised: Ballot


class Prepare(msgspec.Struct, frozen=True, tag="p1a", array_like=True):
    """Phase 1a: promise to ignore ballots below ``ballot``; report slots >= ``first_slot``."""

    src: int
    ballot: Ballot
    first_slot: int


class Promise(msgspec.Struct, frozen=True, tag="p1b", array_like=True):
    """Phase 1b: the promise, with every value accepted at or above the requested slot.

    ``snapshot_slot`` tells the candidate that slots up to it are chosen and compacted
    here; a candidate that does not know them cannot lead until it has caught up.
    """

    src: int
    ballot: Ballot
    accepted: tuple[SlotValue, ...]
    commit_index: int
    snapshot_slot: int
    first_slot: int = 0
    """The ``first_slot`` of the Prepare answered: a leader running phase 1 again for a
    new configuration tells its answers from those of its election."""


class Propose(msgspec.Struct, frozen=True, tag="p2a", array_like=True):
    """Phase 2a for a run of consecutive slots starting at ``first_slot``.

    Batching slots in one message keeps the per-slot cost low when many are in flight.
    ``commit_index`` piggybacks what the leader knows to be chosen.
    """

    src: int
    ballot: Ballot
    first_slot: int
    values: tuple[Value, ...]
    commit_index: int


class Accepted(msgspec.Struct, frozen=True, tag="p2b", array_like=True):
    """Phase 2b: slots ``first_slot .. last_slot`` were accepted (and synced) at ``ballot``."""

    src: int
    ballot: Ballot
    first_slot: int
    last_slot: int


class Reject(msgspec.Struct, frozen=True, tag="nack", array_like=True):
    """NACK: the receiver has promised ``promised``, higher than ``ballot``."""

    src: int
    ballot: Ballot
    promised: Ballot


class Commit(msgspec.Struct, frozen=True, tag="hb", array_like=True):
    """Leader heartbeat: slots up to ``commit_index`` are chosen.

    A follower marks a slot chosen only when it accepted it at this very ``ballot``; a
    leader proposes one value per slot per ballot, so that value is the chosen one. Other
    slots are fetched through catch-up. ``read_seq`` numbers heartbeat rounds so that the
    leader can tell which reads a quorum has confirmed.
    """

    src: int
    ballot: Ballot
    commit_index: int
    read_seq: int


class CommitAck(msgspec.Struct, frozen=True, tag="hba", array_like=True):
    """A follower's answer to a heartbeat: its progress, and the read round it confirms.

    ``voter`` is false from a node that may not vote (a learner, or one still joining):
    its progress drives catch-up, but it confirms neither a read round nor the leader's
    quorum, since it promised nothing.
    """

    src: int
    ballot: Ballot
    commit_index: int
    read_seq: int
    voter: bool = True


class Chosen(msgspec.Struct, frozen=True, tag="cu", array_like=True):
    """Catch-up: values known chosen, for a node whose log has holes below the commit.

    ``ballot`` is the sender's promise. A node that knows a slot is chosen has promised at
    least the ballot it was chosen at, so every value here was chosen at or below
    ``ballot``; the receiver raises its own promise to it before it learns them. That is
    what keeps it from ever acknowledging a lower ballot's different value for those
    slots, and what deposes a stale leader that receives it (docs/PROTOCOL.md).
    """

    src: int
    ballot: Ballot
    first_slot: int
    values: tuple[Value, ...]
    commit_index: int


class Forward(msgspec.Struct, frozen=True, tag="fwd", array_like=True):
    """Commands a follower received from clients, for the leader to propose."""

    src: int
    commands: tuple[bytes, ...]


class ReadIndexRequest(msgspec.Struct, frozen=True, tag="ri", array_like=True):
    """A follower asks the leader for a linearizable read index on behalf of ``tokens``."""

    src: int
    tokens: tuple[int, ...]


class ReadIndexReply(msgspec.Struct, frozen=True, tag="rir", array_like=True):
    """Reads ``tokens`` may be served once the asker has applied through ``index``."""

    src: int
    tokens: tuple[int, ...]
    index: int


class SnapshotRequest(msgspec.Struct, frozen=True, tag="snq", array_like=True):
    """Ask ``dst`` to send its snapshot: the asker needs slots it compacted away."""

    src: int
    commit_index: int


class InstallSnapshot(msgspec.Struct, frozen=True, tag="snap", array_like=True):
    """A whole snapshot (the runtime streams large ones in chunks beneath this message).

    ``ballot`` is the sender's promise when the snapshot was taken: every slot in it was
    chosen at or below it, and the receiver's promise rises to it, as for :class:`Chosen`.
    """

    src: int
    last_slot: int
    members: tuple[int, ...]
    data: bytes
    ballot: Ballot = ZERO
    membership: bytes = b""
    """The sender's membership history (:mod:`pyxos.core.membership`), encoded: the
    configurations of the slots after the snapshot may depend on compacted changes."""


class SnapshotChunk(msgspec.Struct, frozen=True, tag="snc", array_like=True):
    """One piece of a snapshot in transit; the runtime streams these, not the core.

    Sending a large snapshot whole would hold it in memory twice and block the link, so
    the runtime sends ``data`` at ``offset`` of ``total`` bytes and waits for the ack.
    """

    src: int
    last_slot: int
    members: tuple[int, ...]
    offset: int
    total: int
    checksum: int
    data: bytes
    ballot: Ballot = ZERO
    """The snapshot's promise floor (see :class:`InstallSnapshot`)."""
    membership: bytes = b""
    """As in :class:`InstallSnapshot`."""


class SnapshotChunkAck(msgspec.Struct, frozen=True, tag="snca", array_like=True):
    """The receiver holds ``next_offset`` bytes of snapshot ``last_slot`` durably.

    After a reconnect or restart the sender resumes from here; ``next_offset == -1``
    asks it to give up (the receiver no longer needs this snapshot).
    """

    src: int
    last_slot: int
    next_offset: int


class Join(msgspec.Struct, frozen=True, tag="join", array_like=True):
    """ "Register my data dir, ``incarnation``, as the one I vote with."

    A node with a new data dir (a new cluster, or a disk that was lost) sends this before
    it may vote. Each peer records the incarnation durably the first time; the node votes
    once a majority of its peers hold it. A wiped node comes back with a new incarnation,
    and any peer of that majority refuses it: it stays a non-voting learner.
    """

    src: int
    incarnation: int
    since: int = 0
    """The slot that added the asker to the cluster (0: a founding member). A peer
    answers only once it knows that membership, so that it has forgotten the
    registration of any earlier member of that id."""


class JoinReply(msgspec.Struct, frozen=True, tag="joinr", array_like=True):
    """The answer to :class:`Join`: ``granted`` once the incarnation is durably recorded;
    otherwise ``known`` is the different incarnation this peer recorded for the asker."""

    src: int
    incarnation: int
    granted: bool
    known: int


class TimeoutNow(msgspec.Struct, frozen=True, tag="tnow", array_like=True):
    """Leader transfer: the leader saw the receiver caught up; it campaigns at once."""

    src: int
    ballot: Ballot


class ChangeRequest(msgspec.Struct, frozen=True, tag="chq", array_like=True):
    """A membership change (encoded :class:`~pyxos.core.membership.Change`) for the
    leader to propose; also a leader transfer when ``transfer_to`` is set."""

    src: int
    change: bytes
    transfer_to: int = 0
    token: int = 0


class ChangeReply(msgspec.Struct, frozen=True, tag="chr", array_like=True):
    """The leader refused request ``token`` at once, for ``error``."""

    src: int
    token: int
    error: str


class NotMember(msgspec.Struct, frozen=True, tag="nmem", array_like=True):
    """The receiver is not a member of the sender's membership ``version``: removed.

    ``voter`` says the sender votes in that configuration: only then does the removed
    node stop (a voter that knows the change can lead the others to it; a learner could
    not, and they might still need the removed node's vote to learn it).
    """

    src: int
    version: int
    voter: bool = False
    commit_index: int = 0
    """The sender's: a member added again under that id, which the sender does not know
    yet, teaches it the chosen slots from there (the sender refuses it otherwise)."""


class MembershipQuery(msgspec.Struct, frozen=True, tag="mq", array_like=True):
    """A node started with ``--join`` asks a member for the cluster's membership.

    It has no membership of its own yet (it learns it from the answer), so it cannot run
    a core; the member answers only a node its newest configuration lists.
    """

    src: int


class MembershipInfo(msgspec.Struct, frozen=True, tag="mi", array_like=True):
    """The answer to :class:`MembershipQuery`: the sender's membership history, encoded."""

    src: int
    membership: bytes


Message = (
    PreVote
    | PreVoteReply
    | Prepare
    | Promise
    | Propose
    | Accepted
    | Reject
    | Commit
    | CommitAck
    | Chosen
    | Forward
    | ReadIndexRequest
    | ReadIndexReply
    | SnapshotRequest
    | InstallSnapshot
    | SnapshotChunk
    | SnapshotChunkAck
    | Join
    | JoinReply
    | TimeoutNow
    | ChangeRequest
    | ChangeReply
    | NotMember
    | MembershipQuery
    | MembershipInfo
)
"""The tagged union the transport encodes and decodes."""

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """Serialize one message to msgpack."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Parse one message; raises ``msgspec.ValidationError``/``DecodeError`` on bad input.

    msgspec itself raises ``UnicodeDecodeError`` for invalid UTF-8 in a string and
    ``RecursionError`` for deeply nested data (both found by fuzzing); they are reported as
    ``DecodeError`` so that callers need to catch msgspec's errors only.
    """
    try:
        return _decoder.decode(data)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from exc
