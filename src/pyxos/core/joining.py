"""Registration of a new data dir: it may vote once a majority of its peers hold it.

A data dir is born with a random incarnation. Until more than half of the other members
have durably recorded that incarnation, the node does not vote; a peer that already
holds another incarnation of it refuses, and the node is a learner for good (its old
votes may be lost). docs/PROTOCOL.md, "Disk loss", gives the argument.
"""

from __future__ import annotations

from pyxos.core.base import ReplicaBase
from pyxos.core.messages import Join, JoinReply, MembershipInfo, MembershipQuery
from pyxos.core.ready import Standing


class JoiningMixin(ReplicaBase):
    """Both sides of registration: asking, and recording a peer's incarnation."""

    def _tick_joining(self) -> None:
        self._join_elapsed += 1
        if self._join_elapsed >= self.options.election_ticks:
            self._ask_to_join()

    def _ask_to_join(self) -> None:
        """Ask every peer that has not yet answered to register our data dir."""
        self._join_elapsed = 0
        if len(self._join_acks) >= self._registration_need():
            self._become_voter()
            return
        self.coverage["join_sent"] += 1
        me = self.history.latest.member(self.id)
        join = Join(self.id, self.incarnation, me.since if me is not None else 0)
        for peer in self._registrars():
            if peer not in self._join_acks:
                self._send(peer, join)

    def _registrars(self) -> tuple[int, ...]:
        """Who registers this member's data dirs: the voters when it was added, but us."""
        me = self.history.latest.member(self.id)
        registrars = me.registrars if me is not None else self.config.members
        return tuple(p for p in registrars if p != self.id)

    def _registration_need(self) -> int:
        """More than half of the registrars other than this node (see
        :meth:`~pyxos.core.config.Config.registration_quorum`)."""
        others = len(self._registrars())
        return others // 2 + 1 if others else 0

    def _on_join(self, m: Join) -> None:
        member = self.history.latest.member(m.src)
        if member is None or member.since != m.since:
            # We do not know that member (yet): an earlier one of that id may still be
            # registered here. Say nothing; it asks again.
            return
        known = self.registry.get(m.src)
        if known is None:
            # Recorded durably before the grant leaves (a persisted message).
            self.coverage["join_registered"] += 1
            self.registry[m.src] = m.incarnation
            self._out.persist.registry[m.src] = m.incarnation
            known = m.incarnation
        if known == m.incarnation:
            self._send_persisted(m.src, JoinReply(self.id, m.incarnation, True, known))
        else:
            self.coverage["join_refused"] += 1
            self._send(m.src, JoinReply(self.id, m.incarnation, False, known))

    def _on_join_reply(self, m: JoinReply) -> None:
        if self.standing is not Standing.JOINING or m.incarnation != self.incarnation:
            return
        if not m.granted:
            # A peer holds an older data dir of ours: we may have lost what it promised.
            self.coverage["became_learner"] += 1
            self.standing = Standing.LEARNER
            self.superseded = m.known
            self._out.persist.standing = Standing.LEARNER
            self._out.persist.superseded = m.known
            return
        if m.src in self._registrars():
            self._join_acks.add(m.src)
        if len(self._join_acks) >= self._registration_need():
            self._become_voter()

    def _become_voter(self) -> None:
        self.coverage["became_voter"] += 1
        self.standing = Standing.VOTER
        self._out.persist.standing = Standing.VOTER
        self._join_acks.clear()
        self._election_elapsed = 0
        self._timeout = self._draw_timeout()

    def _on_membership_query(self, m: MembershipQuery) -> None:
        """A node being added asks what the membership is (``pyxos serve --join``)."""
        if m.src not in self.history.latest.ids:
            return  # not added (yet), or removed: it retries, and says so to its operator
        self._send(m.src, MembershipInfo(self.id, self.history.encode()))
