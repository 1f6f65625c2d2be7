"""``python -m pyxos.check FILE``: the checker as a command.

The exit status is the verdict, so that scripts and CI can act on it: 0 only when the
history was shown linearizable, 1 for a violation, 2 when nothing definite could be said
(the search ran out of time, or the input could not be read). "Unknown" shares its status
with bad input on purpose: neither is a pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pyxos.check.checker import DEFAULT_TIMEOUT_S, check_history
from pyxos.check.formats import FORMATS, load_history
from pyxos.check.history import HistoryError

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_UNKNOWN = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so that ``pyxos check`` can reuse its options)."""
    parser = argparse.ArgumentParser(
        prog="python -m pyxos.check",
        description="Check that a recorded history is linearizable. Exit status: 0"
        " linearizable, 1 not linearizable, 2 unknown (time budget exhausted) or bad input.",
    )
    parser.add_argument("file", help="history file (JSON lines as written by pyxos chaos)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"time budget in seconds for the whole check (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--all-keys",
        action="store_true",
        help="search every key to the end even after one is found not linearizable"
        " (slower; by default the first violation settles the verdict)",
    )
    parser.add_argument(
        "--format",
        choices=["auto", *FORMATS],
        default="auto",
        help="input format (default: detect; jepsen-etcd and porcupine-kv are the"
        " recorded test histories)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checker; return the exit status instead of exiting."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (argparse exits with 2)
        return exc.code if isinstance(exc.code, int) else EXIT_UNKNOWN
    if args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        events, model = load_history(args.file, args.format)
        result = check_history(events, model, timeout_s=args.timeout, all_keys=args.all_keys)
    except (OSError, HistoryError, UnicodeDecodeError) as exc:
        if args.json:
            print(json.dumps({"verdict": "error", "error": str(exc)}))
        else:
            print(f"error: {args.file}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.explain())
    if result.verdict == "ok":
        return EXIT_OK
    return EXIT_VIOLATION if result.verdict == "violation" else EXIT_UNKNOWN
