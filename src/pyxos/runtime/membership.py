"""A running node's side of membership: asking for changes, and acting on those chosen.

The core decides (:mod:`pyxos.core.membership`, :mod:`pyxos.core.reconfig`); this module
is what a caller and the node's I/O need around it:

- :meth:`Membership.change` and :meth:`Membership.transfer` turn the core's tokens into
  awaitables: the change is asked here (the core forwards it to the leader), and the call
  returns once it is chosen and governs the log, or raises the refusal with its reason;
- :meth:`Membership.follow` keeps the transport's peers, and the address book the status
  pages show, in step with the configurations the log chose;
- a node that learns it was removed stops and says why.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

from pyxos.core.driver import Work
from pyxos.core.membership import KINDS, Change, History
from pyxos.core.replica import Replica
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.errors import MembershipError, Unavailable, UnknownOutcome
from pyxos.transport import Transport


class MembershipHost(Protocol):
    """What :class:`Membership` needs of its node (:class:`~pyxos.runtime.node.Node`)."""

    @property
    def config(self) -> NodeConfig: ...
    @property
    def replica(self) -> Replica: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def failed(self) -> str | None: ...
    def wake(self) -> None: ...
    def check_alive(self) -> None: ...
    async def wait_for_leader(self, remaining: float) -> None: ...
    async def wait_for_change(self, timeout: float) -> None: ...
    async def wait_for_quietly(self, predicate: Callable[[], bool], timeout: float) -> bool: ...
    def stop_removed(self, reason: str) -> None: ...


RESEND_AFTER = 1.0
"""Seconds without an answer after which a request is sent again, if the leader changed."""

RETRY_HERE = (
    "no leader is known; retry",
    "not the leader; retry",
    "the last membership change has not taken effect yet; retry",
)
"""Refusals that pass by themselves within moments (an election; the few slots until a
chosen change governs the log): asked again, until the caller's timeout."""


def parse_address(address: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) as a pair, or ``None`` if it is not one."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def address_book(history: History, known: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
    """Every member's peer address: ``known`` updated by what the configurations say."""
    book = dict(known)
    for epoch in history.epochs:
        for m in epoch.members:
            parsed = parse_address(m.address)
            if parsed is not None:
                book[m.id] = parsed
    return book


class Membership:
    """``node.membership``: see the module docstring."""

    def __init__(self, node: MembershipHost) -> None:
        self._node = node
        self._tokens = random.Random()
        self._changes: dict[int, asyncio.Future[int]] = {}
        """Token -> the slot its change was chosen in (or the refusal)."""
        self._transfers: dict[int, asyncio.Future[None]] = {}
        """Token -> a refusal of that leader transfer (success shows as a new leader)."""
        self._followed = -1
        self.addresses: dict[int, tuple[str, int]] = dict(node.config.members)
        """Every node's peer address, as the command line and the chosen changes say."""

    # ------------------------------------------------------------------ reading

    @property
    def history(self) -> History:
        return self._node.replica.history

    @property
    def version(self) -> int:
        """The slot of the newest change known here (0: the founding membership)."""
        return self.history.version

    def rows(self) -> list[dict[str, Any]]:
        """The members of the newest configuration, for ``PAXOS MEMBERS`` and the CLI.

        ``caught_up`` and ``behind`` are known on the leader only (``None`` elsewhere).
        """
        replica = self._node.replica
        leading = replica.leader == replica.id
        rows = []
        for m in self.history.latest.members:
            address = m.address or (
                format_address(self.addresses[m.id]) if m.id in self.addresses else ""
            )
            behind: int | None = None
            caught_up: bool | None = None
            if m.id == replica.id and leading:
                behind, caught_up = 0, True
            elif leading:
                progress = replica.progress_of(m.id)
                if progress is not None:
                    behind = max(0, replica.commit_index - progress.commit_index)
                    caught_up = progress.voter and behind <= replica.options.catchup_batch
            rows.append(
                {
                    "id": m.id,
                    "address": address,
                    "role": "voter" if m.voter else "learner",
                    "leader": m.id == replica.leader,
                    "caught_up": caught_up,
                    "behind": behind,
                    "since": m.since,
                }
            )
        return rows

    # ------------------------------------------------------------------ asking

    async def change(
        self,
        kind: str,
        node_id: int,
        address: str = "",
        *,
        auto_promote: bool = False,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Add, promote or remove ``node_id``; return once the change governs the log.

        Raises :class:`MembershipError` with the protocol's reason when it is refused,
        :class:`Unavailable` when no leader answered in time, and :class:`UnknownOutcome`
        when it was proposed but not seen chosen in time (ask :meth:`rows`).
        """
        if kind not in KINDS:
            raise MembershipError(f"unknown membership change {kind!r}: choose {', '.join(KINDS)}")
        if kind == "add" and parse_address(address) is None:
            raise MembershipError(f"bad peer address {address!r}: expected HOST:PORT")
        node = self._node
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            node.check_alive()
            token = self._tokens.getrandbits(62) + 1
            future: asyncio.Future[int] = loop.create_future()
            self._changes[token] = future
            change = Change(kind, node_id, address, auto_promote, -1, token)
            try:
                slot = await self._ask(change, future, deadline)
                break
            except MembershipError as exc:
                if str(exc) not in RETRY_HERE or loop.time() >= deadline:
                    raise
                await node.wait_for_leader(deadline - loop.time())
            except TimeoutError:
                raise UnknownOutcome(
                    f"the {kind} of node {node_id} was not seen chosen within {timeout:.1f}s"
                ) from None
            finally:
                self._changes.pop(token, None)
        delay = self.history.delay
        # It governs the slots from slot + delay on: wait until this node is there (the
        # leader fills idle slots), so that the next change is not refused as too early.
        await node.wait_for_quietly(
            lambda: node.replica.commit_index + 1 >= slot + delay or node.failed is not None,
            deadline - loop.time(),
        )
        return {
            "kind": kind,
            "node": node_id,
            "slot": slot,
            "version": self.version,
            "members": self.rows(),
        }

    async def _ask(self, change: Change, future: asyncio.Future[int], deadline: float) -> int:
        """Ask for ``change`` until ``future`` has its outcome; again of each new leader.

        The request goes to the leader this node knows; if that leader dies before it
        answers, nothing ever will, so a leader change sends it again (same token). If
        the first request was proposed after all, the second is refused (the change is
        in, or in progress): when the membership then holds what was asked, that is the
        success it is.
        """
        node = self._node
        loop = asyncio.get_running_loop()
        asked_of = node.replica.leader
        resent = False
        node.replica.change_membership(change)
        node.wake()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                return await asyncio.wait_for(asyncio.shield(future), min(remaining, RESEND_AFTER))
            except TimeoutError:
                leader = node.replica.leader
                if leader is not None and leader != asked_of:
                    asked_of, resent = leader, True
                    node.replica.change_membership(change)
                    node.wake()
            except MembershipError:
                if resent and self._holds(change):
                    return self.version
                raise

    def _holds(self, change: Change) -> bool:
        """Whether the newest membership already is what ``change`` asks for."""
        member = self.history.latest.member(change.node)
        if change.kind == "remove":
            return member is None
        if change.kind == "promote":
            return member is not None and member.voter
        return member is not None and member.address == change.address

    async def transfer(self, to: int, timeout: float = 10.0) -> int:
        """Hand leadership to voter ``to``; return once it leads (as this node sees it)."""
        node = self._node
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if node.replica.leader == to:
            return to
        while True:
            node.check_alive()
            token = self._tokens.getrandbits(62) + 1
            refused: asyncio.Future[None] = loop.create_future()
            self._transfers[token] = refused
            asked_of = node.replica.leader
            node.replica.transfer_leadership(to, token)
            node.wake()
            try:
                while node.replica.leader != to:
                    if refused.done():
                        refused.result()  # raises the refusal
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise Unavailable(f"node {to} did not take over within {timeout:.1f}s")
                    await node.wait_for_change(remaining)  # after every batch and tick
                    leader = node.replica.leader
                    if leader is not None and leader not in (asked_of, to):
                        # The leader asked died before it answered: ask the new one.
                        asked_of = leader
                        node.replica.transfer_leadership(to, token)
                        node.wake()
                return to
            except MembershipError as exc:
                if str(exc) not in RETRY_HERE or loop.time() >= deadline:
                    raise
                await node.wait_for_leader(deadline - loop.time())
            finally:
                self._transfers.pop(token, None)
                if not refused.done():
                    refused.cancel()

    # ------------------------------------------------------------------ the node's side

    def on_work(self, work: Work) -> None:
        """Outcomes of changes and transfers, and this node's removal, from one batch."""
        for _slot, change, error in work.changes:
            future = self._changes.get(change.token)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(_slot)
                else:
                    future.set_exception(MembershipError(error))
        for token, error in work.change_errors:
            waiter = self._changes.get(token) or self._transfers.get(token)
            if waiter is not None and not waiter.done():
                waiter.set_exception(MembershipError(error))
        if work.changes:
            self.follow()
        if work.removed is not None:
            self._node.stop_removed(work.removed)

    def follow(self) -> None:
        """Peers and addresses after the membership moved (and once at start)."""
        history = self.history
        if history.version == self._followed:
            return
        self._followed = history.version
        self.addresses = address_book(history, self.addresses)
        self._node.transport.update_members(self.addresses)

    def fail_waiters(self, exc: Exception) -> None:
        waiters: list[asyncio.Future[Any]] = [*self._changes.values(), *self._transfers.values()]
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
