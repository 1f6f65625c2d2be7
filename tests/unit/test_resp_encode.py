"""Reply encoding for RESP2 and RESP3, decoding, and the RESP2 -> RESP3 translation."""

from __future__ import annotations

import math

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxos.resp.replies import (
    OK,
    ErrorReply,
    Push,
    Reply,
    ReplyDecodeError,
    SimpleString,
    Verbatim,
    decode_reply,
    encode,
    encode_resp2,
    encode_resp3,
    error,
    to_resp3,
)
from pyxos.resp.requests import encode_command


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (SimpleString("PONG"), b"+PONG\r\n", b"+PONG\r\n"),
        (error("syntax error"), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n"),
        (ErrorReply("WRONGTYPE x"), b"-WRONGTYPE x\r\n", b"-WRONGTYPE x\r\n"),
        (0, b":0\r\n", b":0\r\n"),
        (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
        (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        ("h\u00e9", b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        ([b"a", None, 1], b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n", b"*3\r\n$1\r\na\r\n_\r\n:1\r\n"),
        (
            (b"a", [b"b"]),
            b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n",
        ),
        (
            {b"k": 1, "x": None},
            b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nx\r\n$-1\r\n",
            b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nx\r\n_\r\n",
        ),
        (Verbatim("a\nb"), b"$3\r\na\nb\r\n", b"=7\r\ntxt:a\nb\r\n"),
        (Push([b"message", 1]), b"*2\r\n$7\r\nmessage\r\n:1\r\n", b">2\r\n$7\r\nmessage\r\n:1\r\n"),
    ],
)
def test_encodings(value: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode_resp2(value) == resp2
    assert encode(value) == resp2
    assert encode_resp3(value) == resp3
    assert encode(value, 3) == resp3


def test_status_and_error_lines_cannot_break_the_stream() -> None:
    assert encode_resp2(SimpleString("a\r\nb")) == b"+a  b\r\n"
    assert encode_resp2(ErrorReply("ERR x\ny")) == b"-ERR x y\r\n"


def test_bytearray_and_memoryview_are_bulk_strings() -> None:
    assert encode_resp2(bytearray(b"ab")) == b"$2\r\nab\r\n"
    assert encode_resp2(memoryview(b"ab")) == b"$2\r\nab\r\n"


def test_unsupported_values_and_protocols() -> None:
    with pytest.raises(TypeError):
        encode_resp2(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode(1, protocol=4)
    with pytest.raises(ValueError):
        Verbatim("x", "toolong")


def test_error_code() -> None:
    assert error("nope").code == "ERR"
    assert error("x", code="WRONGTYPE") == "WRONGTYPE x"


# Values that survive encode -> decode exactly (RESP3 keeps every type; bool and float need
# RESP3, and RESP2 maps arrive as flat arrays).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=30),
    st.text(max_size=10).map(lambda t: SimpleString(t.replace("\r", "").replace("\n", ""))),
    st.text(max_size=10).map(lambda t: ErrorReply("ERR " + t.replace("\r", "").replace("\n", ""))),
    st.binary(max_size=10).map(Verbatim),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(Push),
        st.dictionaries(st.binary(max_size=5), children, max_size=4),
    ),
    max_leaves=12,
)


def _normal(value: Reply) -> object:
    """Decoded form: simple/error/verbatim keep their types; -0.0 == 0.0 is fine."""
    if isinstance(value, Push):
        return ("push", [_normal(v) for v in value])
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return [(_normal(k), _normal(v)) for k, v in value.items()]
    return (type(value).__name__, value)


@given(values)
def test_resp3_round_trip(value: Reply) -> None:
    decoded = decode_reply(encode_resp3(value))
    assert _normal(decoded) == _normal(value)


@given(values)
def test_resp2_encoding_is_one_complete_reply(value: Reply) -> None:
    data = encode_resp2(value)
    decode_reply(data)  # exactly one complete reply, no trailing bytes
    reader = hiredis.Reader()
    reader.feed(data)
    assert reader.gets() is not False
    assert reader.gets() is False


@given(st.recursive(st.one_of(st.none(), st.integers(), st.binary(max_size=10)), st.lists))
def test_to_resp3_matches_direct_encoding(value: Reply) -> None:
    assert to_resp3(encode_resp2(value)) == encode_resp3(value)


def test_to_resp3_fast_path_leaves_null_free_replies_alone() -> None:
    reply = b"$5\r\nx-1\r\n\r\n"  # contains "-1\r\n" inside data: still correct
    assert to_resp3(reply) == reply
    assert to_resp3(b"*-1\r\n") == b"_\r\n"
    assert to_resp3(b":-1\r\n") == b":-1\r\n"
    assert to_resp3(b"+OK\r\n") == b"+OK\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"+OK",
        b"$3\r\nab\r\n",
        b":1\r\n:2\r\n",
        b"?x\r\n",
        b":x\r\n",
        b"#x\r\n",
        b"=3\r\nabc\r\n",
    ],
)
def test_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ReplyDecodeError):
        decode_reply(data)


def test_encode_command() -> None:
    assert encode_command(["SET", b"k", 10]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n10\r\n"
    assert encode_command([]) == b"*0\r\n"
