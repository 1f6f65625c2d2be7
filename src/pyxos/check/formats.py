"""Which reader and which model go with a history file.

A history is only meaningful against the specification of the system that produced it,
so each input format is tied to its model here, in one place, for the command line and
for tests alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from pyxos.check.external import parse_jepsen_etcd, parse_porcupine_kv
from pyxos.check.history import Event
from pyxos.check.jsonl import parse_lines
from pyxos.check.models import AppendModel, KVModel, Model, RegisterModel


@dataclass(frozen=True, slots=True)
class Format:
    """A history file format: how to parse it and what to check it against."""

    name: str
    parse: Callable[[Iterable[str]], list[Event]]
    model: Callable[[], Model[Any]]


def _parse_jsonl(lines: Iterable[str]) -> list[Event]:
    return list(parse_lines(lines))


FORMATS: Final[dict[str, Format]] = {
    "jsonl": Format("jsonl", _parse_jsonl, KVModel),
    "jepsen-etcd": Format("jepsen-etcd", parse_jepsen_etcd, RegisterModel),
    "porcupine-kv": Format("porcupine-kv", parse_porcupine_kv, AppendModel),
}


def detect_format(lines: Iterable[str]) -> Format:
    """Guess the format from the first non-blank line; pyxos's own when in doubt.

    An empty file is a valid (empty, hence linearizable) history in any format.
    """
    for text in lines:
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("{:"):
            return FORMATS["porcupine-kv"]
        if "jepsen.util" in stripped:
            return FORMATS["jepsen-etcd"]
        break
    return FORMATS["jsonl"]


def load_history(path: str | os.PathLike[str], fmt: str = "auto") -> tuple[list[Event], Model[Any]]:
    """Read a history file in format ``fmt`` ("auto" to detect it) with its model.

    Raises :class:`~pyxos.check.history.HistoryError` for malformed content, ``KeyError``
    for an unknown format name and ``OSError`` when the file cannot be read.
    """
    with open(path, encoding="utf-8") as fp:
        lines = fp.readlines()
    chosen = detect_format(lines) if fmt == "auto" else FORMATS[fmt]
    return chosen.parse(lines), chosen.model()
