"""pyxos.check: a linearizability checker for recorded histories.

Given what clients saw (invocations and completions with their times), decide whether
some order of the operations, consistent with real time, explains every result under the
store's sequential specification. The search is Wing-Gong / Lowe's, as in Porcupine,
partitioned by key; see :mod:`pyxos.check.wgl`. Typical use::

    from pyxos.check import check_history, read_history

    result = check_history(read_history("history.jsonl"), timeout_s=60)
    if not result.ok:
        print(result.explain())

or ``python -m pyxos.check history.jsonl``.
"""

from pyxos.check.checker import (
    DEFAULT_TIMEOUT_S,
    Candidate,
    CheckResult,
    KeyResult,
    KeyVerdict,
    Verdict,
    Violation,
    check_history,
    check_operations,
)
from pyxos.check.external import parse_jepsen_etcd, parse_porcupine_kv
from pyxos.check.formats import FORMATS, Format, detect_format, load_history
from pyxos.check.history import Event, EventType, HistoryError, Op, build_operations
from pyxos.check.jsonl import event_to_json, parse_event, parse_lines, read_history, write_history
from pyxos.check.models import AppendModel, KVModel, Model, RegisterModel
from pyxos.check.wgl import SearchResult, search

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FORMATS",
    "AppendModel",
    "Candidate",
    "CheckResult",
    "Event",
    "EventType",
    "Format",
    "HistoryError",
    "KVModel",
    "KeyResult",
    "KeyVerdict",
    "Model",
    "Op",
    "RegisterModel",
    "SearchResult",
    "Verdict",
    "Violation",
    "build_operations",
    "check_history",
    "check_operations",
    "detect_format",
    "event_to_json",
    "load_history",
    "parse_event",
    "parse_jepsen_etcd",
    "parse_lines",
    "parse_porcupine_kv",
    "read_history",
    "search",
    "write_history",
]
