"""VirtualClock keeps task.Clock's contract and order, checked on random schedules.

The reference is ``twisted.internet.task.Clock`` advanced the way ``VirtualRuntime.advance`` did
before it had a clock of its own: step to the next due call, let ``Clock.advance`` fire what is
due, repeat, so that calls scheduled on the way fire at their own time.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock

from evasync.testing import VirtualClock, VirtualRuntime


def reference_advance(clock: Clock, seconds: float) -> None:
    target = clock.seconds() + seconds
    while True:
        due = min((call.getTime() for call in clock.getDelayedCalls()), default=None)
        if due is None or due > target:
            break
        clock.advance(max(0.0, due - clock.seconds()))
    clock.advance(target - clock.seconds())


def virtual_advance(clock: VirtualClock, seconds: float) -> None:
    clock.advance(seconds)


# Times are integers and halves: exact in binary, so both clocks compute the same floats. Few
# distinct times, so that many calls are due together and their order is put to the test.
delays = st.integers(0, 3) | st.sampled_from([-1, 0.5])
shifts = st.integers(-2, 2) | st.just(-0.5)
handle = st.integers(0, 40)

handle_ops = st.one_of(
    st.tuples(st.just("cancel"), handle),
    st.tuples(st.just("reset"), handle, delays),
    st.tuples(st.just("delay"), handle, shifts),
)
# A call runs its own list of operations when it fires: nested scheduling and rescheduling.
ops = st.recursive(
    handle_ops | st.tuples(st.just("call"), delays, st.just(())),
    lambda inner: st.tuples(st.just("call"), delays, st.lists(inner, max_size=3).map(tuple)),
    max_leaves=12,
)
programs = st.lists(
    ops | st.tuples(st.just("advance"), st.integers(0, 5) | st.just(0.5))
    | st.tuples(st.just("check")),
    max_size=40,
)


def play(clock: Any, advance: Any, program: list) -> list:
    """Run ``program`` on ``clock``; the log of everything observable."""
    log: list = []
    handles: list = []
    labels: dict = {}

    def fired(label: int, nested: tuple) -> None:
        log.append(("fired", label, clock.seconds()))
        for op in nested:
            run(op)

    def run(op: tuple) -> None:
        kind = op[0]
        if kind == "call":
            call = clock.callLater(op[1], fired, len(handles), op[2])
            labels[call] = len(handles)
            handles.append(call)
        elif kind == "advance":
            advance(clock, op[1])
            log.append(("now", clock.seconds()))
        elif kind == "check":
            log.append(("pending", [(labels[c], c.getTime(), c.active())
                                    for c in clock.getDelayedCalls()]))
        elif handles:
            call = handles[op[1] % len(handles)]
            try:
                getattr(call, kind)(*op[2:])
            except (AlreadyCalled, AlreadyCancelled) as exc:
                log.append((kind, type(exc).__name__))
            else:
                log.append((kind, call.getTime() if call.active() else None))

    for op in program:
        run(op)
    advance(clock, 100)  # whatever is still pending fires, in order
    log.append(("end", clock.seconds(), len(clock.getDelayedCalls())))
    return log


@settings(max_examples=400, deadline=None, database=None)
@given(programs)
def test_the_virtual_clock_fires_as_task_clock_does_on_any_schedule(program):
    assert play(VirtualClock(), virtual_advance, program) == \
        play(Clock(), reference_advance, program)


def test_it_provides_the_reactor_time_interfaces():
    clock = VirtualClock()
    call = clock.callLater(1, lambda: None)
    assert IReactorTime.providedBy(clock) and IDelayedCall.providedBy(call)
    assert call.getTime() == 1 and call.active()


def test_equal_times_fire_in_the_order_they_were_scheduled():
    clock = VirtualClock()
    fired = []
    for name in "abcde":
        clock.callLater(3, fired.append, name)
    clock.advance(3)
    assert fired == list("abcde")


def fire_order(schedule, moves) -> str:
    """Names in the order they fire: ``schedule`` is (name, time), ``moves`` (name, method, s)."""
    clock = VirtualClock()
    fired = []
    calls = {name: clock.callLater(when, fired.append, name) for name, when in schedule}
    for name, method, seconds in moves:
        getattr(calls[name], method)(seconds)
    clock.advance(10)
    return "".join(fired)


def test_a_call_moved_later_goes_before_the_calls_already_due_at_its_new_time():
    assert fire_order([("a", 1), ("b", 2), ("c", 2)], [("a", "delay", 1)]) == "abc"
    assert fire_order([("a", 1), ("b", 2), ("c", 2)], [("a", "reset", 2)]) == "abc"


def test_a_call_moved_earlier_goes_after_them():
    assert fire_order([("a", 2), ("b", 2), ("c", 3)], [("c", "delay", -1)]) == "abc"
    assert fire_order([("c", 3), ("a", 2), ("b", 2)], [("c", "reset", 2)]) == "abc"


def test_calls_moved_together_keep_the_order_they_had():
    assert fire_order([("a", 1), ("b", 1), ("c", 2)],
                      [("b", "delay", 1), ("a", "delay", 1)]) == "abc"
    assert fire_order([("c", 2), ("a", 3), ("b", 3)],
                      [("b", "delay", -1), ("a", "delay", -1)]) == "cab"


def test_a_chain_of_calls_fires_at_each_own_time_within_one_advance():
    clock = VirtualClock()
    seen = []

    def step(n):
        seen.append(clock.seconds())
        if n:
            clock.callLater(2, step, n - 1)

    clock.callLater(2, step, 2)
    clock.advance(10)
    assert seen == [2, 4, 6] and clock.seconds() == 10


def test_advance_zero_fires_what_is_due_now_and_nothing_later():
    clock = VirtualClock()
    fired = []
    clock.callLater(0, fired.append, "now")
    clock.callLater(0.001, fired.append, "later")
    clock.advance(0)
    assert fired == ["now"]


def test_an_exception_from_a_call_leaves_the_clock_at_that_call():
    clock = VirtualClock()
    fired = []
    clock.callLater(1, lambda: 1 / 0)
    clock.callLater(2, fired.append, "after")
    with pytest.raises(ZeroDivisionError):
        clock.advance(5)
    assert clock.seconds() == 1 and fired == []
    clock.advance(4)
    assert fired == ["after"] and clock.seconds() == 5


def test_it_refuses_to_go_back_in_time():
    with pytest.raises(ValueError, match="cannot go back in time"):
        VirtualClock().advance(-1)


def test_many_cancelled_calls_do_not_pile_up():
    clock = VirtualClock()
    for _ in range(10_000):
        clock.callLater(5, lambda: None).cancel()
    assert len(clock._heap) < 200 and clock.getDelayedCalls() == []


def test_a_runtime_still_accepts_a_task_clock(tmp_path):
    from evasync import Runtime, delay, use_runtime

    clock = Clock()
    runtime = Runtime(clock=clock, db_path=tmp_path / "game.db")
    fired = []
    with use_runtime(runtime):
        delay(5, fired.append, "done")
    clock.advance(5)
    runtime.close()
    assert fired == ["done"]


def test_virtual_runtime_advances_its_virtual_clock():
    with VirtualRuntime() as rt:
        assert isinstance(rt.clock, VirtualClock)
        rt.advance(2.5)
        assert rt.now == 2.5
