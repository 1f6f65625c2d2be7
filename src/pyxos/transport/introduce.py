"""Learning who listens at a peer address: the first step of ``pyxos serve --join``.

A node being added knows the peer addresses of some members (``--join``), not their ids,
and the transport keys every link by id. :func:`identify` dials an address once, runs the
dialer's half of the handshake accepting whichever member answers, and hangs up: the
answer is the id to add to the transport's members under that address. The listener
accepts only a node its membership lists, so a node that was not added yet learns it
here, as a refused handshake (``not_member``).
"""

from __future__ import annotations

import asyncio

from pyxos.transport import handshake
from pyxos.transport.connection import Context
from pyxos.transport.framing import HANDSHAKE_MAX_FRAME, FrameReader
from pyxos.transport.handshake import HandshakeError, RejectReason
from pyxos.transport.sockopts import set_nodelay
from pyxos.transport.tls import describe_tls_failure


async def identify(ctx: Context, host: str, port: int) -> int:
    """The id of the member listening at ``host:port``; raises :class:`HandshakeError`
    (refused, timed out) or :class:`OSError` (nothing listens there)."""
    cfg = ctx.config
    async with asyncio.timeout(cfg.connect_timeout):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        set_nodelay(writer)
        frames = FrameReader(reader, HANDSHAKE_MAX_FRAME)
        try:
            async with asyncio.timeout(cfg.handshake_timeout):
                if cfg.tls is not None:
                    try:
                        await writer.start_tls(
                            cfg.tls.require("peer_client"),
                            ssl_handshake_timeout=cfg.handshake_timeout,
                        )
                    except (OSError, EOFError) as exc:
                        detail = describe_tls_failure(exc, cfg.handshake_timeout)
                        raise HandshakeError(RejectReason.TLS, detail) from exc
                return await handshake.dial(frames, writer, ctx.identity, None)
        except TimeoutError:
            raise HandshakeError(RejectReason.TIMEOUT, "handshake not completed") from None
    finally:
        writer.transport.abort()
