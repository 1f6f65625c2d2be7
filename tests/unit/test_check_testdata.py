"""The checker against histories recorded by others, with verdicts established elsewhere
(../shared/testdata/README.md): Jepsen's etcd register logs and Porcupine's key-value
logs. Agreeing with all of them is the best evidence that the checker is neither too
strict nor too lenient on real-world histories."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pyxos.check import check_history, load_history

TESTDATA = Path(__file__).parents[2].parent / "shared" / "testdata"

pytestmark = pytest.mark.skipif(
    not (TESTDATA / "README.md").is_file(),
    reason=f"recorded histories not found at {TESTDATA} (the shared test-data checkout)",
)

# Each file must be decided well within this (they take milliseconds to a second).
TIMEOUT_S = 60.0


def etcd_verdicts() -> dict[str, str | None]:
    """File name -> expected verdict, read from the README rather than copied here."""
    if not (TESTDATA / "README.md").is_file():
        return {}
    readme = (TESTDATA / "README.md").read_text()
    good = re.search(r"Linearizable \(\d+\): ([\d, ]+)\.", readme)
    no_verdict = re.search(r"No verdict recorded for: ([\w., ]+)\.", readme)
    assert good is not None and no_verdict is not None, "README format changed"
    linearizable = {f"etcd_{n.strip()}.log" for n in good.group(1).split(",")}
    undecided = {name.strip() for name in no_verdict.group(1).split(",")}
    verdicts: dict[str, str | None] = {}
    for path in sorted((TESTDATA / "jepsen-etcd").glob("etcd_*.log")):
        if path.name in undecided:
            verdicts[path.name] = None
        else:
            verdicts[path.name] = "ok" if path.name in linearizable else "violation"
    return verdicts


ETCD = etcd_verdicts()
PORCUPINE = (
    sorted(p.name for p in (TESTDATA / "porcupine-kv").glob("c*-*.txt"))
    if TESTDATA.is_dir()
    else []
)


def test_readme_and_files_agree() -> None:
    assert len(ETCD) == 103
    assert sum(v == "ok" for v in ETCD.values()) == 23
    assert sum(v is None for v in ETCD.values()) == 1
    assert len(PORCUPINE) == 6


@pytest.mark.parametrize("name", sorted(ETCD))
def test_jepsen_etcd(name: str) -> None:
    events, model = load_history(TESTDATA / "jepsen-etcd" / name, "jepsen-etcd")
    assert model.name == "register"
    result = check_history(events, model, timeout_s=TIMEOUT_S)
    expected = ETCD[name]
    if expected is None:
        assert result.verdict in ("ok", "violation")  # it must at least finish
    else:
        assert result.verdict == expected, result.explain()


@pytest.mark.parametrize("name", PORCUPINE)
def test_porcupine_kv(name: str) -> None:
    events, model = load_history(TESTDATA / "porcupine-kv" / name, "porcupine-kv")
    assert model.name == "append"
    result = check_history(events, model, timeout_s=TIMEOUT_S)
    expected = "ok" if name.endswith("-ok.txt") else "violation"
    assert result.verdict == expected, result.explain()
    if expected == "violation":
        (violation,) = result.violations[:1]
        assert violation.candidates, "a violation names what could not come next"


def test_all_recorded_histories_take_seconds_not_minutes() -> None:
    start = time.perf_counter()
    for name in ETCD:
        events, model = load_history(TESTDATA / "jepsen-etcd" / name, "jepsen-etcd")
        assert check_history(events, model, timeout_s=TIMEOUT_S).verdict != "unknown"
    for name in PORCUPINE:
        events, model = load_history(TESTDATA / "porcupine-kv" / name, "porcupine-kv")
        assert check_history(events, model, timeout_s=TIMEOUT_S).verdict != "unknown"
    assert time.perf_counter() - start < 60  # about 1 s on a laptop; generous for CI
