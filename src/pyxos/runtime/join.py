"""Starting a node that was added to a running cluster: ``pyxos serve --join``.

A node added with ``pyxos member add`` has an empty data dir and knows only some members'
peer addresses, not the membership its core must start from. :func:`join_cluster` asks
for it: it listens on the node's own peer address, learns which member answers at each
``--join`` address (:mod:`pyxos.transport.introduce`), sends it a
:class:`~pyxos.core.messages.MembershipQuery`, and waits for the history that member
sends back. The history is written to the data dir before the node starts, so a restart
needs no ``--join`` again, and the node's peers come from it rather than from
``--cluster``. A member answers only a node its newest configuration lists: until the
add is chosen, the node retries and says what is missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from pyxos.core.membership import History
from pyxos.core.messages import MembershipInfo, MembershipQuery, Message
from pyxos.core.ready import Persist
from pyxos.runtime.config import ConfigError, NodeConfig
from pyxos.runtime.membership import address_book, format_address, parse_address
from pyxos.runtime.standing import open_data_dir
from pyxos.transport import Transport
from pyxos.transport.handshake import HandshakeError, RejectReason

log = logging.getLogger("pyxos.join")


class JoinFailed(Exception):
    """No member gave this node the membership in time; the message says what each said."""


def parse_join(spec: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (the members' peer addresses) as pairs."""
    out = []
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        address = parse_address(part)
        if address is None:
            raise ConfigError(f"bad --join address {part!r}: expected HOST:PORT")
        out.append(address)
    if not out:
        raise ConfigError("--join needs the peer address of at least one member")
    return out


async def join_cluster(
    config: NodeConfig, join: list[tuple[str, int]], timeout: float = 60.0
) -> NodeConfig:
    """The node's configuration with the cluster's members, once its data dir holds the
    membership (asked for now, or found there: a restart)."""
    config = dataclasses.replace(config, check_members=False)
    storage, state, _snapshot, _moved = open_data_dir(config, log)
    try:
        if state.membership is not None:
            history = History.decode(state.membership)
            log.info("node %d: the data dir holds the membership already", config.node_id)
        else:
            history = await learn_membership(config, join, timeout)
            storage.write(Persist(membership=history.encode(), must_sync=True))
    finally:
        storage.close()
    if config.node_id not in history.latest.ids:
        raise JoinFailed(
            f"node {config.node_id} is not a member of the cluster (members "
            f"{list(history.latest.ids)}); add it first with `pyxos member add`"
        )
    members = address_book(history, {config.node_id: config.members[config.node_id]})
    return dataclasses.replace(config, members=members)


async def learn_membership(
    config: NodeConfig, join: list[tuple[str, int]], timeout: float
) -> History:
    """Ask the members at ``join`` for the membership until one answers (see module)."""
    me = config.node_id
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[History] = loop.create_future()

    def on_message(message: Message) -> None:
        if isinstance(message, MembershipInfo) and not answer.done():
            try:
                answer.set_result(History.decode(message.membership))
            except Exception as exc:  # a malformed answer: wait for another
                log.warning("node %d sent a malformed membership: %r", message.src, exc)

    transport = Transport(
        me,
        config.cluster_id,
        config.secret,
        {me: config.members[me]},
        on_message,
        config=config.transport,
    )
    await transport.start()
    deadline = loop.time() + timeout
    said: dict[str, str] = {}
    peer = format_address(config.members[me])
    try:
        while True:
            for host, port in join:
                where = format_address((host, port))
                try:
                    pid = await transport.identify(host, port)
                except HandshakeError as exc:
                    if exc.reason in (RejectReason.NOT_MEMBER, RejectReason.CLOSED):
                        # A listener hangs up on a node its membership does not list
                        # (it says no more to an unauthenticated dialer).
                        said[where] = (
                            f"refused: node {me} is not a member yet (add it with `pyxos "
                            f"member add --id {me} --peer {peer}`), or this node's "
                            f"--cluster-id or --secret differ"
                        )
                    else:
                        said[where] = str(exc)
                    continue
                except (OSError, TimeoutError) as exc:
                    said[where] = f"cannot connect: {exc!r}"
                    continue
                transport.update_members({pid: (host, port)})
                transport.send(pid, MembershipQuery(me))
                said[where] = f"node {pid} was asked"
            try:
                history = await asyncio.wait_for(asyncio.shield(answer), 1.0)
            except TimeoutError:
                if loop.time() >= deadline:
                    detail = "; ".join(f"{k}: {v}" for k, v in said.items())
                    raise JoinFailed(
                        f"no member gave node {me} the membership within {timeout:.0f}s ({detail})"
                    ) from None
                for where, what in said.items():
                    log.info("joining: %s: %s", where, what)
                continue
            log.info(
                "node %d learned the membership (version %d): voters %s, learners %s",
                me,
                history.version,
                list(history.latest.voters),
                list(history.latest.learners),
            )
            return history
    finally:
        await transport.close()
