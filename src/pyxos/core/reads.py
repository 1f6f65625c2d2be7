"""Linearizable reads by read index: one quorum heartbeat round serves every read queued.

The leader notes its commit index when a read arrives, starts a heartbeat round (unless
one is out: reads arriving meanwhile share the next), and answers once a quorum of
voters confirmed that round, which proves no other leader was chosen in between. A new
leader answers none until every slot it re-proposed after phase 1 is chosen: otherwise a
value its predecessor chose could be missing. Followers ask the leader for the index
and serve locally once they applied through it (etcd's ``read_only.go``).
"""

from __future__ import annotations

from pyxos.core.base import ReplicaBase
from pyxos.core.messages import ReadIndexReply, ReadIndexRequest
from pyxos.core.options import Role
from pyxos.core.progress import ReadRound

__all__ = ["ReadRound", "ReadsMixin"]


class ReadsMixin(ReplicaBase):
    """The read-index rounds of a leader, and the forwarding of a follower's reads."""

    def _queue_read(self, token: int, origin: int) -> None:
        round_ = self._read_queue
        if round_ is None:
            round_ = self._read_queue = ReadRound(seq=0, index=self.commit_index)
        # The index must cover every write committed before this read arrived.
        round_.index = self.commit_index
        if origin == self.id:
            round_.local.append(token)
        else:
            round_.remote.setdefault(origin, []).append(token)
        # Start a confirmation round at once unless one is already out: reads that come
        # in meanwhile share the next one (batching without a timer).
        if not self._read_rounds:
            self._broadcast_commit()

    def _open_read_round(self) -> None:
        """A heartbeat round starts: the reads queued so far wait for it."""
        if self._read_queue is not None:
            self._read_queue.seq = self._read_seq
            self._read_rounds.append(self._read_queue)
            self._read_queue = None

    def _check_reads(self) -> None:
        if self.role is not Role.LEADER:
            return
        while self._read_rounds:
            round_ = self._read_rounds[0]
            confirmed = {self.id} | {
                p for p, pr in self._progress.items() if pr.read_seq >= round_.seq
            }
            if not self.config.is_phase2_quorum(confirmed):
                return
            # A new leader serves no read until everything phase 1 found is chosen:
            # otherwise a value chosen by its predecessor could be missing (a stale read).
            if self.commit_index < self._phase1_end:
                return
            self._read_rounds.popleft()
            self.coverage["read_round_confirmed"] += 1
            index = max(round_.index, self._phase1_end)
            self._out.reads.extend((t, index) for t in round_.local)
            for origin, tokens in round_.remote.items():
                self._send(origin, ReadIndexReply(self.id, tuple(tokens), index))
        if self._read_queue is not None:
            self._broadcast_commit()

    def _fail_reads(self) -> None:
        rounds = list(self._read_rounds)
        if self._read_queue is not None:
            rounds.append(self._read_queue)
        for round_ in rounds:
            self._out.failed_reads.extend(round_.local)
            for origin, tokens in round_.remote.items():
                self._send(origin, ReadIndexReply(self.id, tuple(tokens), -1))
        self._read_rounds.clear()
        self._read_queue = None

    def _flush_forward_reads(self) -> None:
        if not self._forward_reads:
            return
        tokens, self._forward_reads = self._forward_reads, []
        if self.role is Role.LEADER:
            for t in tokens:
                self._queue_read(t, self.id)
        elif self.leader is not None:
            self.coverage["read_index_forwarded"] += 1
            self._send(self.leader, ReadIndexRequest(self.id, tuple(tokens)))
        else:
            self._out.failed_reads.extend(tokens)

    def _on_read_index_request(self, m: ReadIndexRequest) -> None:
        for t in m.tokens:
            self._queue_read(t, m.src)

    def _refuse_read_index(self, m: ReadIndexRequest) -> None:
        """Not the leader: the asker retries elsewhere."""
        self._send(m.src, ReadIndexReply(self.id, m.tokens, -1))

    def _on_read_index_reply(self, m: ReadIndexReply) -> None:
        if m.index < 0:
            self._out.failed_reads.extend(m.tokens)
        else:
            self._out.reads.extend((t, m.index) for t in m.tokens)
