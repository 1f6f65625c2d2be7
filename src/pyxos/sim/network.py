"""A simulated network: delay, reordering, loss, duplication and partitions.

Every decision draws from one seeded RNG, so the same seed delivers the same messages in
the same order. Partitions are a set of cut directed links, which covers symmetric
splits, isolated nodes and one-way (asymmetric) cuts alike. Every message crosses the
real codec (``encode`` on send, ``decode`` on delivery), as it does between real nodes,
so a message the codec cannot carry fails here first.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field

from pyxos.core.messages import Message, decode, encode


@dataclass(slots=True)
class Faults:
    """Fault rates for one run; the swarm runner draws them per seed."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: int = 0
    max_delay: int = 2
    long_delay: float = 0.0
    """Probability that a message takes up to ``long_delay_ticks`` instead."""
    long_delay_ticks: int = 20
    hold_on_cut: int = 0
    """Ticks a message to a cut link is held for a reconnect, as the real transport
    queues it (``stale_after``); 0 drops it at once."""


@dataclass(slots=True)
class Network:
    rng: random.Random
    faults: Faults
    cut: set[tuple[int, int]] = field(default_factory=set)
    coverage: Counter[str] = field(default_factory=Counter)
    """``sent:<Kind>``, ``delivered:<Kind>`` and the faults that hit messages."""
    _queue: list[tuple[int, int, int, int, bytes, int]] = field(default_factory=list)
    _held: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    """(sent tick, src, dst, data) of messages waiting for their link to heal."""
    _seq: int = 0
    sent: int = 0
    dropped: int = 0
    _last: tuple[Message, bytes] | None = None
    """The last message encoded: a broadcast encodes once for all its receivers."""

    def send(self, now: int, src: int, dst: int, message: Message) -> None:
        self.sent += 1
        self.coverage["sent:" + type(message).__name__] += 1
        f = self.faults
        rng = self.rng
        if f.drop and rng.random() < f.drop:
            self.dropped += 1
            self.coverage["net_dropped"] += 1
            return
        last = self._last
        if last is not None and last[0] is message:
            data = last[1]
        else:
            data = encode(message)
            self._last = (message, data)
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        if copies > 1:
            self.coverage["net_duplicated"] += 1
        for _ in range(copies):
            # ``int(random() * n)`` rather than ``randint``: a tenth of the cost, on the
            # simulator's hottest path.
            if f.long_delay and rng.random() < f.long_delay:
                span = f.long_delay_ticks - f.max_delay + 1
                delay = f.max_delay + int(rng.random() * span)
                self.coverage["net_long_delay"] += 1
            else:
                delay = f.min_delay + int(rng.random() * (f.max_delay - f.min_delay + 1))
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, src, dst, data, now))

    def due(self, now: int) -> list[tuple[int, int, bytes, Message]]:
        """Messages whose time has come (raw and decoded), minus those crossing a cut."""
        out: list[tuple[int, int, bytes, Message]] = []
        hold = self.faults.hold_on_cut
        if self._held:
            waiting = self._held
            self._held = []
            for sent, src, dst, data in waiting:
                if now - sent > hold:
                    self.dropped += 1
                elif (src, dst) in self.cut:
                    self._held.append((sent, src, dst, data))
                else:
                    # The link is back: the queued message goes out after the reconnect.
                    self.coverage["net_delivered_after_heal"] += 1
                    self._seq += 1
                    heapq.heappush(self._queue, (now + 1, self._seq, src, dst, data, sent))
        q = self._queue
        while q and q[0][0] <= now:
            _, _, src, dst, data, sent = heapq.heappop(q)
            if (src, dst) in self.cut:
                if hold and now - sent <= hold:
                    self._held.append((sent, src, dst, data))
                    continue
                self.dropped += 1
                self.coverage["net_cut"] += 1
                continue
            message = decode(data)
            self.coverage["delivered:" + type(message).__name__] += 1
            out.append((src, dst, data, message))
        return out

    def in_flight(self) -> int:
        return len(self._queue) + len(self._held)

    def heal(self) -> None:
        self.cut.clear()

    def isolate(self, node: int, members: tuple[int, ...]) -> None:
        for other in members:
            if other != node:
                self.cut.add((node, other))
                self.cut.add((other, node))

    def split(self, side: set[int], members: tuple[int, ...]) -> None:
        for a in members:
            for b in members:
                if (a in side) != (b in side):
                    self.cut.add((a, b))
