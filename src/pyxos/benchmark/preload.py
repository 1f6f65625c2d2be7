"""Writing every key once before a measurement, so that the workers' GETs find values.

Plain asyncio streams and pipelined ``MSET``s: it runs once, before the clock starts, so it
has none of the hot path's constraints (:mod:`pyxos.benchmark.loadgen`).
"""

from __future__ import annotations

import asyncio
import contextlib

import hiredis

from pyxos.benchmark.plan import KEY_FORMAT, Endpoint, encode, make_value

__all__ = ["preload"]


async def preload(
    endpoint: Endpoint,
    keys: int,
    value_size: int,
    password: str | None = None,
    batch: int = 200,
    depth: int = 8,
    timeout: float = 30.0,
) -> None:
    """Write every key once with pipelined ``MSET``s, so that GETs find values."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*endpoint), timeout)
    parser = hiredis.Reader()
    value = make_value(value_size)
    outstanding = 0

    async def read_one() -> None:
        while True:
            reply = parser.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise ConnectionError(f"preload failed: {reply}")
                return
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                raise ConnectionError("preload: server closed the connection")
            parser.feed(data)

    try:
        if password is not None:
            writer.write(encode(b"AUTH", password.encode()))
            await read_one()
        for first in range(0, keys, batch):
            args = [b"MSET"]
            for k in range(first, min(keys, first + batch)):
                args += [KEY_FORMAT % k, value]
            writer.write(encode(*args))
            outstanding += 1
            if outstanding >= depth:
                await read_one()
                outstanding -= 1
        while outstanding:
            await read_one()
            outstanding -= 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
