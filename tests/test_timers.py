"""Many timed calls on one clock call (evasync._timers): the same order as the clock's own."""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from evasync._timers import Timers


def test_calls_run_at_their_time_in_time_order_and_equal_times_in_scheduling_order():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    for name, when in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2), ("b3", 2)]:
        timers.at(when, ran.append, name)
    clock.advance(1)
    assert ran == ["a"]
    clock.advance(1)
    assert ran == ["a", "b1", "b2", "b3"]
    clock.advance(1)
    assert ran == ["a", "b1", "b2", "b3", "c"]
    assert len(timers) == 0 and clock.getDelayedCalls() == []


def test_the_clock_holds_one_call_for_the_soonest_entry():
    clock = Clock()
    timers = Timers(clock)
    for when in (5, 3, 9, 4):
        timers.at(when, lambda _: None, None)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [3]


def test_a_cancelled_entry_does_not_run_and_lets_go_of_its_argument():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    keep = timers.at(1, ran.append, "kept")
    dropped = timers.at(1, ran.append, "dropped")
    Timers.cancel(dropped)
    assert dropped[2] is None and dropped[3] is None
    assert Timers.active(keep) and not Timers.active(dropped)
    clock.advance(1)
    assert ran == ["kept"] and not Timers.active(keep)


def test_cancelling_the_soonest_moves_the_clocks_call_to_the_next():
    clock = Clock()
    timers = Timers(clock)
    first = timers.at(1, lambda _: None, None)
    timers.at(7, lambda _: None, None)
    Timers.cancel(first)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [7]
    Timers.cancel(timers._heap[0])
    assert clock.getDelayedCalls() == []


class TurnClock(Clock):
    """A Clock that notes where each of its calls (a reactor turn) ends."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def callLater(self, delay, func, *args, **kwargs):
        def turn():
            func(*args, **kwargs)
            self.log.append("turn")
        return super().callLater(delay, turn)


def test_a_call_scheduled_for_now_by_a_call_waits_for_the_next_turn():
    ran = []
    clock = TurnClock(ran)
    timers = Timers(clock)

    def again(n):
        ran.append(n)
        if n < 3:
            timers.at(clock.seconds(), again, n + 1)

    timers.at(1, again, 0)
    clock.advance(1)
    assert ran == [0, "turn", 1, "turn", 2, "turn", 3, "turn"]


def test_many_cancelled_entries_are_compacted_away():
    clock = Clock()
    timers = Timers(clock)
    timers.at(1, lambda _: None, None)
    entries = [timers.at(3600 + i, lambda _: None, i) for i in range(1000)]
    for entry in entries:
        Timers.cancel(entry)
    assert len(timers._heap) < 200 and len(timers) == 1


def test_a_failing_call_does_not_lose_the_others():
    clock = Clock()
    timers = Timers(clock)
    ran = []

    def boom(_):
        raise RuntimeError("boom")

    timers.at(1, boom, None)
    timers.at(1, ran.append, "after")
    with pytest.raises(RuntimeError):
        clock.advance(1)
    clock.advance(0)
    assert ran == ["after"]


def test_stop_cancels_everything_and_the_clocks_call():
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.at(1, ran.append, "x")
    timers.stop()
    clock.advance(5)
    assert ran == [] and clock.getDelayedCalls() == []


@pytest.mark.parametrize("seed", range(20))
def test_random_schedules_run_in_the_same_order_as_on_the_clock_itself(seed):
    rng = random.Random(seed)
    ours, theirs = Clock(), Clock()
    timers = Timers(ours)
    ran_ours: list = []
    ran_theirs: list = []
    entries, calls = [], []

    def schedule(name, when):
        entries.append(timers.at(ours.seconds() + when, ran_ours.append, name))
        calls.append(theirs.callLater(when, ran_theirs.append, name))

    for step in range(200):
        action = rng.random()
        if action < 0.6:
            schedule(step, rng.choice([0, 0.5, 1, 1, 2, 3.25, 10]))
        elif action < 0.75 and entries:
            index = rng.randrange(len(entries))
            Timers.cancel(entries[index])
            if calls[index].active():
                calls[index].cancel()
        else:
            seconds = rng.choice([0, 0.25, 1, 2.5])
            ours.advance(seconds)
            theirs.advance(seconds)
            assert ran_ours == ran_theirs
    ours.advance(100)
    theirs.advance(100)
    assert ran_ours == ran_theirs
