"""Reading, writing and pairing histories; malformed input is an error, not a verdict."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxos.check import (
    FORMATS,
    Event,
    HistoryError,
    build_operations,
    detect_format,
    event_to_json,
    load_history,
    parse_jepsen_etcd,
    parse_lines,
    parse_porcupine_kv,
    read_history,
    write_history,
)


def line(**fields: object) -> str:
    base: dict[str, object] = {
        "process": 1,
        "type": "invoke",
        "f": "set",
        "key": "k",
        "value": 1,
        "time_ns": 10,
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not DROP})


DROP = object()


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    events = [
        Event(1, "invoke", "cas", "k", [None, 5], 10),
        Event(2, "invoke", "get", "k", None, 11),
        Event(1, "ok", "cas", "k", 1, 20),
        Event(2, "info", "get", "k", None, 30),
        Event(3, "invoke", "incr", "ü", None, 40),
        Event(3, "ok", "incr", "ü", 6, 50),
    ]
    path = tmp_path / "h.jsonl"
    write_history(events, path)
    assert read_history(path) == events
    assert [e.line for e in read_history(path)] == [1, 2, 3, 4, 5, 6]
    buffer = io.StringIO()
    write_history(events, buffer)
    buffer.seek(0)
    assert read_history(buffer) == events


def test_writer_emits_one_compact_object_per_line() -> None:
    text = event_to_json(Event(0, "invoke", "cas", "k", (1, 2), 7))
    assert json.loads(text) == {
        "process": 0,
        "type": "invoke",
        "f": "cas",
        "key": "k",
        "value": [1, 2],
        "time_ns": 7,
    }
    assert "\n" not in text


def test_blank_lines_are_skipped_and_extra_fields_ignored() -> None:
    events = list(parse_lines(["", line(extra="x"), "   \n"]))
    assert events == [Event(1, "invoke", "set", "k", 1, 10)]
    assert events[0].line == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (line(process=DROP), "missing field(s): process"),
        (line(value=DROP), "missing field(s): value"),
        (line(process="1"), "process must be an integer"),
        (line(process=True), "process must be an integer"),
        (line(type="done"), "type must be one of"),
        (line(f="append"), "f must be one of"),
        (line(key=3), "key must be a string"),
        (line(time_ns=1.5), "time_ns must be an integer"),
        (line(value=1.5), "set needs an int or string"),
        (line(value=None), "set needs an int or string"),
        (line(value=True), "set needs an int or string"),
        (line(f="get", value=1), "a get invocation carries null"),
        (line(f="incr", value="2"), "incr needs an int delta"),
        (line(f="cas", value=[1]), "cas needs [expected, new]"),
        (line(f="cas", value=[1, None]), "cas needs [expected, new]"),
        (line(f="cas", value={"a": 1}), "cas needs [expected, new]"),
        (line(type="ok", f="get", value=[1]), "get reads an int, string or null"),
        (line(type="ok", f="incr", value="seven"), "incr returns the new value"),
        (line(type="ok", f="incr", value=" 7"), "incr returns the new value"),
        (line(type="ok", f="cas", value=2), "cas returns 1 or 0"),
        (line(type="ok", f="cas", value="1"), "cas returns 1 or 0"),
    ],
)
def test_loader_rejects_malformed_lines_with_their_number(text: str, message: str) -> None:
    with pytest.raises(HistoryError) as info:
        list(parse_lines([line(), "", text]))
    assert isinstance(info.value, ValueError)
    assert info.value.line == 3
    assert str(info.value).startswith("line 3: ")
    assert message in str(info.value)


def test_loader_accepts_anything_for_set_and_del_results_and_failures() -> None:
    events = list(
        parse_lines(
            [
                line(type="ok", value={"whatever": [1]}),
                line(type="fail", f="cas", value="timeout"),
                line(type="info", f="incr", value=None),
            ]
        )
    )
    assert len(events) == 3


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            [
                Event(1, "invoke", "get", "k", None, 0, 1),
                Event(1, "invoke", "get", "k", None, 1, 2),
            ],
            "still open",
        ),
        ([Event(1, "ok", "get", "k", None, 0, 1)], "no open invocation"),
        (
            [Event(1, "invoke", "get", "k", None, 0, 1), Event(1, "ok", "set", "k", None, 1, 2)],
            "does not match",
        ),
        (
            [Event(1, "invoke", "get", "k", None, 0, 1), Event(1, "ok", "get", "j", None, 1, 2)],
            "does not match",
        ),
        (
            [Event(1, "invoke", "get", "k", None, 5, 1), Event(1, "ok", "get", "k", None, 4, 2)],
            "precedes its invocation",
        ),
    ],
)
def test_pairing_rejects_impossible_sequences(events: list[Event], message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        build_operations(events)
    assert info.value.line == 2 if message != "no open invocation" else info.value.line == 1


def test_pairing_keeps_invocation_order_and_outcomes() -> None:
    ops = build_operations(
        [
            Event(1, "invoke", "set", "k", 1, 0, 1),
            Event(2, "invoke", "set", "k", 2, 1, 2),
            Event(3, "invoke", "get", "k", None, 2, 3),
            Event(2, "fail", "set", "k", None, 3, 4),
            Event(1, "info", "set", "k", None, 4, 5),
            Event(3, "ok", "get", "k", 1, 5, 6),
            Event(2, "invoke", "del", "k", None, 6, 7),  # never completes
        ]
    )
    assert [(o.index, o.f, o.known, o.return_ns, o.result, o.line) for o in ops] == [
        (0, "set", False, None, None, 1),
        (2, "get", True, 5, 1, 3),
        (3, "del", False, None, None, 7),
    ]


def test_jepsen_etcd_lines_translate_to_our_meanings() -> None:
    events = parse_jepsen_etcd(
        [
            "INFO  jepsen.util - 3\t:invoke\t:read\tnil",
            "INFO  jepsen.util - 3\t:ok\t:read\t4",
            "INFO  jepsen.util - 1   :invoke :cas    [0 4]  ",
            "INFO  jepsen.util - 1\t:fail\t:cas\t[0 4]",
            "INFO  jepsen.util - 2\t:invoke\t:write\t2",
            "INFO  jepsen.util - 2\t:info\t:write\t:timed-out",
            "INFO  jepsen.util - 0\t:invoke\t:read\tnil",
            "INFO  jepsen.util - 0\t:fail\t:read\t:timed-out",
            "INFO  jepsen.util - 4\t:invoke\t:cas\t[1 2]",
            "INFO  jepsen.util - 4\t:ok\t:cas\t[1 2]",
        ]
    )
    assert [(e.process, e.type, e.f, e.value) for e in events] == [
        (3, "invoke", "read", None),
        (3, "ok", "read", 4),
        (1, "invoke", "cas", (0, 4)),
        (1, "ok", "cas", False),  # the compare failed: an observation
        (2, "invoke", "write", 2),
        (2, "info", "write", None),
        (0, "invoke", "read", None),
        (0, "fail", "read", None),  # no answer: constrains nothing
        (4, "invoke", "cas", (1, 2)),
        (4, "ok", "cas", True),
    ]
    assert [e.time_ns for e in events] == list(range(1, 11))


def test_porcupine_lines_parse() -> None:
    events = parse_porcupine_kv(
        [
            '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}',
            '{:process 1, :type :invoke, :f :get, :key "4", :value nil}',
            '{:process 1, :type :ok, :f :get, :key "4", :value "x 0 1 yx 0 2 y"}',
        ]
    )
    assert [(e.process, e.type, e.f, e.key, e.value) for e in events] == [
        (0, "invoke", "append", "0", "x 0 0 y"),
        (1, "invoke", "get", "4", None),
        (1, "ok", "get", "4", "x 0 1 yx 0 2 y"),
    ]


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_jepsen_etcd, "INFO  jepsen.util - 3\t:invoke\t:frobnicate\tnil"),
        (parse_jepsen_etcd, "INFO  jepsen.util - 3\t:invoke\t:cas\t[1]"),
        (parse_jepsen_etcd, "INFO  jepsen.util - 3\t:ok\t:read\tfour"),
        (parse_porcupine_kv, '{:process 0, :type :invoke, :f :append, :key 0, :value "x"}'),
    ],
)
def test_external_parsers_reject_garbage_with_line_numbers(parse: object, text: str) -> None:
    assert callable(parse)
    with pytest.raises(HistoryError) as info:
        parse(["", text])
    assert info.value.line == 2


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(["", "{:process 0, :type :invoke}"]) is FORMATS["porcupine-kv"]
    assert detect_format(["INFO  jepsen.util - 3\t:invoke"]) is FORMATS["jepsen-etcd"]
    assert detect_format([line()]) is FORMATS["jsonl"]
    assert detect_format([]) is FORMATS["jsonl"]
    path = tmp_path / "h.log"
    path.write_text("INFO  jepsen.util - 3\t:invoke\t:read\tnil\n")
    events, model = load_history(path)
    assert model.name == "register"
    assert events[0].f == "read"


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["set", "get", "del", "incr", "cas"]),
            st.text(max_size=5),
            st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=5)),
            st.integers(0, 2**63),
        ),
        max_size=20,
    )
)
def test_writer_and_reader_round_trip_any_invocations(
    rows: list[tuple[int, str, str, int | str, int]],
) -> None:
    events = []
    for process, f, key, value, time_ns in rows:
        arg: object = {"set": value, "get": None, "del": None, "incr": None}.get(f, [None, value])
        events.append(Event(process, "invoke", f, key, arg, time_ns))
    text = "\n".join(event_to_json(e) for e in events)
    assert list(parse_lines(text.splitlines())) == events
