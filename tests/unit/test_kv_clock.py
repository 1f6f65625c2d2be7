"""pyxos.kv.clock: the stamp on a write and the clock ticks, as the server and the simulator
both decide them."""

from __future__ import annotations

from pyxos.kv import COMMANDS, KVStateMachine, decode_request, encode_request
from pyxos.kv.clock import clock_tick, leader_tick, read_needs_tick, write_stamp

T0 = 1_700_000_000_000


def _no_clock() -> int:
    raise AssertionError("the clock was read")


def test_a_plain_set_is_not_stamped_and_the_clock_is_not_even_read() -> None:
    assert write_stamp([b"SET", b"k", b"v"], COMMANDS[b"set"], _no_clock) == 0
    assert write_stamp([b"MSET", b"a", b"1", b"b", b"2"], COMMANDS[b"mset"], _no_clock) == 0


def test_writes_whose_result_depends_on_time_carry_the_clock() -> None:
    assert write_stamp([b"SET", b"k", b"v", b"PX", b"5"], COMMANDS[b"set"], lambda: T0) == T0
    assert write_stamp([b"PEXPIRE", b"k", b"5"], COMMANDS[b"pexpire"], lambda: T0 + 1) == T0 + 1
    assert write_stamp([b"INCR", b"k"], COMMANDS[b"incr"], lambda: T0 + 2) == T0 + 2


def test_a_clock_tick_only_advances_the_replicated_clock() -> None:
    tick = decode_request(clock_tick(T0))
    assert (tick.client_id, tick.argv, tick.time) == (0, [], T0)
    kv = KVStateMachine()
    kv.apply(encode_request([b"SET", b"k", b"v", b"PX", b"100"], time=T0))
    assert kv.apply(clock_tick(T0 + 99)) == b"+OK\r\n"
    assert kv.now == T0 + 99 and kv.read([b"EXISTS", b"k"]) == b":1\r\n"
    kv.apply(clock_tick(T0 + 100))
    assert kv.read([b"EXISTS", b"k"]) == b":0\r\n"
    kv.apply(clock_tick(T0))  # a stamp below the clock does not move it back
    assert kv.now == T0 + 100


def test_a_read_ticks_first_only_when_it_touches_a_key_due_by_the_readers_clock() -> None:
    kv = KVStateMachine()
    assert not read_needs_tick(kv, [b"GET", b"k"], 0, T0 + 10**9)  # nothing expires at all
    kv.apply(encode_request([b"SET", b"k", b"v", b"PX", b"100"], time=T0))
    kv.apply(encode_request([b"SET", b"other", b"v"]))
    assert not read_needs_tick(kv, [b"GET", b"k"], 0, T0 + 99)
    assert read_needs_tick(kv, [b"GET", b"k"], 0, T0 + 100)
    assert read_needs_tick(kv, [b"TTL", b"k"], 0, T0 + 100)
    assert not read_needs_tick(kv, [b"GET", b"other"], 0, T0 + 100)
    assert not read_needs_tick(kv, [b"GET", b"k"], 1, T0 + 100)  # another database
    kv.apply(clock_tick(T0 + 100))
    assert not read_needs_tick(kv, [b"GET", b"k"], 0, T0 + 100)


def test_the_leader_ticks_while_a_key_is_due_by_its_clock() -> None:
    kv = KVStateMachine()
    assert leader_tick(kv, T0) is None
    kv.apply(encode_request([b"SET", b"k", b"v", b"PX", b"100"], time=T0))
    assert leader_tick(kv, T0 + 99) is None
    tick = leader_tick(kv, T0 + 150)
    assert tick == clock_tick(T0 + 150)
    kv.apply(tick)
    assert len(kv) == 0 and leader_tick(kv, T0 + 200) is None
