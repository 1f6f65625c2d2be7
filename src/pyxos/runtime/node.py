"""A running node: one protocol core, its disk, its peers and its state machine.

:class:`Node` puts the pieces together and owns their lifecycle; each has a home of its
own and talks to the others through the node's public surface only:

- the core and its :class:`~pyxos.core.driver.Driver` (shared with the simulator);
- :class:`~pyxos.runtime.shell.Shell`: the I/O around the driver (writes, sends, applies,
  the node's own snapshots);
- :class:`~pyxos.runtime.requests.Requests`: what callers of ``submit`` and ``read`` wait on;
- :class:`~pyxos.runtime.snapshot_transfer.SnapshotTransfers`: snapshots streamed between
  nodes;
- :func:`~pyxos.runtime.status.node_status`: what status pages report;
- :class:`~pyxos.runtime.membership.Membership`: membership changes, leader transfer, and
  the peers the chosen membership lists;
- :class:`~pyxos.runtime.node_calls.NodeCalls` (a base class): what callers do, ``submit``,
  ``read`` and the waits.

Inputs are peer messages, ticks and client calls; each may change the core, after which
the node looks for a new leader or standing and wakes the shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

from pyxos.core.ballot import Ballot
from pyxos.core.bugs import NO_BUGS
from pyxos.core.config import Config
from pyxos.core.driver import Driver
from pyxos.core.membership import History
from pyxos.core.messages import InstallSnapshot, Message, SnapshotChunk, SnapshotChunkAck
from pyxos.core.ready import Standing
from pyxos.core.replica import InvariantViolation, Replica, Role
from pyxos.core.statemachine import StateMachine
from pyxos.faults import Bug, bug_state
from pyxos.runtime.config import NodeConfig
from pyxos.runtime.errors import NodeFailed, Unavailable, UnknownOutcome
from pyxos.runtime.membership import Membership, format_address
from pyxos.runtime.metrics import NodeMetrics
from pyxos.runtime.node_calls import NodeCalls
from pyxos.runtime.requests import Requests
from pyxos.runtime.shell import Shell, ShellLinks
from pyxos.runtime.snapshot_transfer import SnapshotTransfers
from pyxos.runtime.standing import describe_standing, open_data_dir
from pyxos.runtime.status import node_status
from pyxos.storage import StorageError
from pyxos.transport import Transport

T = TypeVar("T")

log = logging.getLogger("pyxos.node")


class Node(NodeCalls):
    """A running replica. ``await start()``, then ``submit`` commands and ``read`` state."""

    def __init__(
        self,
        config: NodeConfig,
        state_machine: StateMachine,
        *,
        on_fatal: Callable[[str], None] | None = None,
        bug: Bug | None = None,
    ) -> None:
        self.config = config
        self.sm = state_machine
        self.id = config.node_id
        self.log = logging.LoggerAdapter(log, {"node": self.id})
        self.metrics = NodeMetrics(self.id)
        self._on_fatal = on_fatal
        self._incarnation = int.from_bytes(os.urandom(8), "big") >> 1
        """This process's identity in the envelopes of its commands (not the data dir's)."""
        self._seq = itertools.count(1)
        self._read_tokens = itertools.count(1)
        self.requests = Requests()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """Set by :meth:`start`. Cached because ``asyncio.get_running_loop`` makes a
        ``getpid`` system call each time, and the per-command paths would pay it."""
        self._closed = False
        self.failed: str | None = None
        self.removed: str | None = None
        """Why the cluster removed this node, once it learned it (it has stopped)."""
        self.storage, state, snapshot, self.moved_aside = open_data_dir(
            config, self.log, sync=bug is None or not bug.skip_fsync
        )
        applied = 0
        if snapshot is not None:
            self.sm.restore(self.storage.read_snapshot())
            applied = snapshot.last_slot
        self.bug = bug
        """A deliberately broken build (``pyxos.faults``), for the chaos tests only."""
        if bug is not None:
            self.log.warning(
                "TEST BUG %s is switched on: this node is deliberately unsafe (%s)",
                bug.name,
                bug.doc,
            )
            state = bug_state(bug, state)
        if state.membership is None:
            # The founding membership, with the peer addresses of --cluster: a node added
            # later learns them from it (``pyxos serve --join``).
            founding = History.founding(
                Config.of(config.members),
                config.core.change_delay,
                {i: format_address(a) for i, a in config.members.items()},
            )
            state = dataclasses.replace(state, membership=founding.encode())
        self.replica = Replica(
            self.id,
            Config.of(config.members),
            random.Random(),
            config.options(),
            state,
            bug.protocol if bug is not None else NO_BUGS,
        )
        self.driver = Driver(self.replica)
        self._leader = self.replica.leader
        self._standing = self.replica.standing
        self.transport = Transport(
            self.id,
            config.cluster_id,
            config.secret,
            config.members,
            self._on_message,
            config=config.transport,
        )
        self.shell = Shell(
            ShellLinks(
                config=config,
                replica=self.replica,
                driver=self.driver,
                storage=self.storage,
                sm=self.sm,
                requests=self.requests,
                metrics=self.metrics,
                log=self.log,
                send=self.transport.send,
                send_snapshot=self._send_snapshot,
                fail=self.fail,
                changed=self._changed_core,
                identity=(self.id, self._incarnation),
                slow_writes=bug.slow_writes if bug is not None else 0.0,
            ),
            applied=applied,
            last_snapshot=applied,
        )
        self.snapshots = SnapshotTransfers(self)
        self.membership = Membership(self)
        """Membership changes and leader transfer (:mod:`pyxos.runtime.membership`)."""
        self.shell.links.on_membership = self.membership.on_work

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen for peers and start ticking."""
        self.membership.follow()  # the peers the membership lists beyond --cluster
        await self.transport.start()
        self._loop = self.shell.loop = loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.config.tick_seconds, self._tick)
        self._tasks.append(asyncio.create_task(self._drive(), name=f"pyxos-drive-{self.id}"))
        r = self.replica
        self.log.info(
            "node %d started: %s, %s, commit %d, applied %d",
            self.id,
            r.standing.value,
            r.role.value,
            r.commit_index,
            self.applied,
        )
        if r.standing is not Standing.VOTER:
            self.log.warning(
                "node %d does not vote yet: %s", self.id, describe_standing(r)["standing_reason"]
            )

    async def close(self) -> None:
        """Stop serving; fail every waiting caller with :class:`Unavailable`."""
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()
        self.snapshots.close()
        self.requests.fail(Unavailable("node stopped"))
        self.membership.fail_waiters(Unavailable("node stopped"))
        await self.shell.close()
        self.storage.close()

    def stop_removed(self, reason: str) -> None:
        """The cluster removed this node: it takes no more part, and says why."""
        self.removed = reason
        self.log.warning("node %d leaves: %s", self.id, reason)
        self.fail(reason)

    def fail(self, reason: str) -> None:
        """Stop voting and serving: never continue on state we could not persist."""
        if self.failed is not None:
            return
        self.failed = reason
        self.shell.closed = True
        self.log.critical("node %d stops: %s", self.id, reason)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self.requests.fail(NodeFailed(reason))
        self.membership.fail_waiters(NodeFailed(reason))
        asyncio.get_running_loop().create_task(self.transport.close())
        if self._on_fatal is not None:
            self._on_fatal(reason)

    # ------------------------------------------------------------------ state

    @property
    def role(self) -> Role:
        return self.replica.role

    @property
    def leader_id(self) -> int | None:
        return self.replica.leader

    @property
    def applied(self) -> int:
        """The last slot applied to the state machine on this node."""
        return self.shell.applied

    def status(self) -> dict[str, Any]:
        """What ``/status`` and ``INFO`` report."""
        return node_status(
            self.replica,
            self.applied,
            self.failed,
            self.membership.addresses,
            self.transport.peer_status(),
        )

    def send(self, dst: int, message: Message) -> None:
        """Hand ``message`` to the transport (drops are the protocol's business)."""
        self.transport.send(dst, message)

    def install_received_snapshot(
        self,
        src: int,
        last_slot: int,
        members: tuple[int, ...],
        ballot: Ballot,
        membership: bytes = b"",
    ) -> None:
        """A streamed snapshot is durable (with its promise floor): let the core jump to it."""
        self.replica.step(InstallSnapshot(src, last_slot, members, b"", ballot, membership))
        self._changed_core()

    async def run_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the I/O thread, in order with the log writes made there (with
        ``NodeConfig.inline_writes`` a follower writes its batches on the loop instead: the
        storage lock orders those)."""
        return await asyncio.get_running_loop().run_in_executor(self.shell.io, fn, *args)

    # ------------------------------------------------------------------ inputs

    def check_alive(self) -> None:
        """Raise what a caller should see if this node serves no more."""
        if self.failed is not None:
            raise NodeFailed(self.failed)
        if self._closed:
            raise Unavailable("node stopped")

    def _tick(self) -> None:
        if self._closed or self.failed:
            return
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.config.tick_seconds, self._tick)
        self.replica.tick()
        if self.requests.has_deadlines:
            self.requests.expire(loop.time())
        self._changed_core()
        self._signal_change()

    def _on_message(self, message: Message) -> None:
        if self._closed or self.failed:
            return
        if isinstance(message, SnapshotChunk | SnapshotChunkAck):
            self.snapshots.on_message(message)
            return
        self.replica.step(message)
        self._changed_core()

    def _send_snapshot(self, peer: int) -> None:
        self.snapshots.send_to(peer)

    def _changed_core(self) -> None:
        """After any input: note a new leader or standing, and wake the shell."""
        leader = self.replica.leader
        if leader != self._leader:
            self._note_leader(self._leader)
            self._leader = leader
        if self.replica.standing is not self._standing:
            self._note_standing()
        self._wake.set()

    def _note_leader(self, before: int | None) -> None:
        self.metrics.leader_changes.inc()
        if before is not None:
            # Commands the old leader was handling may or may not be chosen: say so now
            # rather than at their timeout, so clients retry with the same request id.
            self.requests.abandon_commands(
                UnknownOutcome(f"leader {before} lost while the command was in flight")
            )
        if self.replica.role is Role.LEADER:
            self.metrics.elections_won.inc()
            self.log.info("node %d leads with ballot %s", self.id, self.replica.ballot)
        else:
            self.log.info("leader is now %s (was %s)", self.replica.leader, before)
        self.requests.leader_changed()

    def _note_standing(self) -> None:
        standing = self._standing = self.replica.standing
        if standing is Standing.VOTER:
            self.log.info("node %d's data dir is registered: it votes now", self.id)
        else:
            self.log.warning(
                "node %d is a %s: %s",
                self.id,
                standing.value,
                describe_standing(self.replica).get("standing_reason", ""),
            )

    def _signal_change(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _drive(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.shell.drain()
                self.membership.follow()  # a snapshot may have brought a newer membership
                self._signal_change()
        except StorageError as exc:
            self.fail(f"storage failed: {exc}")
        except asyncio.CancelledError:
            raise
        except InvariantViolation as exc:
            self.log.critical("broken invariant: %s", exc)
            self.fail(f"broken invariant: {exc}")
        except Exception as exc:
            self.log.exception("driver crashed")
            self.fail(f"driver crashed: {exc!r}")
