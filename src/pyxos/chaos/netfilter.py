"""Random packet loss on chosen loopback TCP ports, with nftables (root only).

The proxies give every directed peer link its own listening port, so dropping a share of
the packets sent to or from a link's port loses packets on that link alone. Unlike the
proxy's ``drop`` mode (which discards whole reads), this is real packet loss below TCP:
the kernel retransmits, segments arrive late and out of order, and a link with heavy loss
stalls for hundreds of milliseconds at a time, as on a bad network.

Each :class:`PacketLoss` owns one nftables table named after the process, so concurrent
runs do not touch each other's rules, and :meth:`PacketLoss.clear` removes it whole.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable


def unavailable_reason() -> str | None:
    """Why packet loss cannot be injected here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "needs root"
    nft = shutil.which("nft")
    if nft is None:
        return "needs nftables (apt-get install -y nftables)"
    probe = f"pyxos_probe_{os.getpid()}"
    for args in (["add", "table", "inet", probe], ["delete", "table", "inet", probe]):
        result = subprocess.run([nft, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return f"nft {' '.join(args[:2])} failed: {result.stderr.strip()}"
    return None


class PacketLoss:
    """Drops ``percent`` % of the TCP packets to or from some loopback ports."""

    def __init__(self) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise RuntimeError("nftables is not installed")
        self._nft = nft
        self.table = f"pyxos_chaos_{os.getpid()}"
        self.active = False

    def set(self, ports: Iterable[int], percent: int) -> None:
        """Replace any loss with ``percent`` % on ``ports`` (both directions)."""
        if not 0 < percent < 100:
            raise ValueError(f"loss percent must be between 1 and 99, not {percent}")
        wanted = sorted(set(ports))
        if not wanted:
            raise ValueError("no ports to lose packets on")
        port_set = ", ".join(str(p) for p in wanted)
        lose = f"numgen random mod 100 < {percent} counter drop"
        script = "\n".join(
            [
                f"table inet {self.table} {{",
                "  chain output {",
                "    type filter hook output priority 0; policy accept;",
                f"    oif lo tcp dport {{ {port_set} }} {lose}",
                f"    oif lo tcp sport {{ {port_set} }} {lose}",
                "  }",
                "}",
            ]
        )
        self.clear()
        self._run(["-f", "-"], script)
        self.active = True

    def clear(self) -> None:
        """Remove every rule this object installed (a no-op when there are none)."""
        if self.active:
            self._run(["delete", "table", "inet", self.table])
            self.active = False

    def dropped_packets(self) -> int:
        """Packets the current rules have dropped so far (0 when none are installed)."""
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", self.rules()))

    def rules(self) -> str:
        """The installed table as ``nft list`` prints it ("" when none)."""
        if not self.active:
            return ""
        return self._run(["list", "table", "inet", self.table])

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        result = subprocess.run(
            [self._nft, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"nft {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout
