"""Folded stacks (``a;b;c 12`` per line, as py-spy's raw format writes) to an SVG flame graph.

    .venv/bin/python bench/flamegraph.py profile.folded [-o profile.svg] [--title T]

A small self-contained renderer so a profile kept in bench/results/ can be looked at in a
browser without speedscope or flamegraph.pl: one rectangle per frame, width proportional to
its samples, children stacked above their caller, each with a tooltip (``<title>``) giving
the frame and its share of the samples. Frames narrower than ``--min-width`` pixels are
dropped (their time stays in their parent's width).
"""

from __future__ import annotations

import argparse
import hashlib
import html
from pathlib import Path
from typing import Any

ROW = 16
WIDTH = 1200


def build_tree(folded: str) -> tuple[dict[str, Any], int]:
    """The call tree of a folded profile: ``{"n": samples, "c": {frame: subtree}}``."""
    root: dict[str, Any] = {"n": 0, "c": {}}
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        root["n"] += n
        node = root
        for frame in stack.split(";"):
            node = node["c"].setdefault(frame, {"n": 0, "c": {}})
            node["n"] += n
    return root, root["n"]


def _colour(frame: str) -> str:
    """Warm colours, stable per function name (so two graphs of one build compare)."""
    h = hashlib.blake2b(frame.split(" (", maxsplit=1)[0].encode(), digest_size=2).digest()
    red = 205 + h[0] % 50
    green = 80 + h[1] % 120
    return f"rgb({red},{green},60)"


def render(folded: str, title: str, min_width: float = 0.5) -> str:
    """The SVG text of the flame graph of ``folded``."""
    root, total = build_tree(folded)
    rects: list[str] = []
    depth_max = 0

    def walk(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_max
        for frame, child in sorted(node["c"].items()):
            w = WIDTH * child["n"] / max(total, 1)
            if w >= min_width:
                depth_max = max(depth_max, depth)
                pct = 100 * child["n"] / max(total, 1)
                label = html.escape(frame)
                text = label if w > 60 else ""
                rects.append(
                    f"<g><title>{label} ({child['n']} samples, {pct:.1f}%)</title>"
                    f'<rect x="{x:.1f}" y="{{y{depth}}}" width="{w:.1f}" height="{ROW - 1}" '
                    f'fill="{_colour(frame)}"/>'
                    + (
                        f'<text x="{x + 3:.1f}" y="{{t{depth}}}" font-size="11" '
                        f'font-family="monospace" clip-path="inset(0)">'
                        f"{text[: int(w / 7)]}</text>"
                        if text
                        else ""
                    )
                    + "</g>"
                )
                walk(child, x, depth + 1)
            x += w

    walk(root, 0.0, 0)
    height = (depth_max + 3) * ROW
    body = "\n".join(rects)
    for d in range(depth_max + 1):
        y = height - (d + 2) * ROW
        body = body.replace(f"{{y{d}}}", str(y)).replace(f"{{t{d}}}", str(y + 12))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}">\n'
        f'<text x="4" y="14" font-size="13" font-family="sans-serif">'
        f"{html.escape(title)} ({total} samples)</text>\n{body}\n</svg>\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folded", type=Path)
    ap.add_argument("-o", "--output", type=Path)
    ap.add_argument("--title", default="")
    ap.add_argument("--min-width", type=float, default=0.5)
    args = ap.parse_args()
    out = args.output or args.folded.with_suffix(".svg")
    text = render(args.folded.read_text(errors="replace"), args.title or args.folded.name,
                  args.min_width)  # fmt: skip
    out.write_text(text)
    print(out)


if __name__ == "__main__":
    main()
