"""The task handler behaves like Evennia's where Evennia's behaviour is sane.

``unpause()`` of an overdue task runs it inside the call, stale cancelled tasks are dropped,
``clock`` can be swapped for a ``task.Clock``, ``clear()`` and ``create_delays()`` exist, and a
delay counts from the moment ``delay()`` was called, even the first one of a process.
"""

from __future__ import annotations

import datetime
import inspect

from twisted.internet import task as twisted_task
from twisted.logger import LogLevel

from evasync import TASK_HANDLER, delay, get_runtime, interactive, now
from evasync.testing import VirtualRuntime

from ._support import CALLS, record


def stored_ids(rt):
    return sorted(row[0] for row in rt.store.tasks())


# -- unpause -----------------------------------------------------------------------------------

def test_unpause_of_an_overdue_task_runs_it_inside_the_call(rt):
    task = delay(5, record, "late")
    task.pause()
    rt.advance(10)
    assert CALLS == []
    assert task.unpause() is True
    assert CALLS == [(("late",), {})]           # no advance needed: it ran inside unpause()
    assert task.called and not task.exists()


def test_unpause_of_an_overdue_persistent_task_deletes_its_stored_copy(rt):
    task = delay(5, record, "late", persistent=True)
    task.pause()
    rt.advance(6)
    task.unpause()
    assert CALLS == [(("late",), {})] and stored_ids(rt) == []


def test_unpause_before_the_time_fires_at_the_original_time(rt):
    task = delay(5, record, "on time")
    task.pause()
    rt.advance(2)
    task.unpause()
    assert CALLS == []
    rt.advance(3)
    assert CALLS == [(("on time",), {})]


# -- stale cancelled tasks ---------------------------------------------------------------------

def test_a_cancelled_task_is_dropped_once_it_is_stale_when_a_task_is_added(rt):
    old = delay(5, record, "old", persistent=True)
    old.cancel()
    rt.advance(5 + 60)
    delay(1, record, "new")                      # not yet stale: 60 s past its time exactly
    assert old.exists() and old.id in stored_ids(rt)
    rt.advance(0.5)
    delay(1, record, "newer")                    # now it is
    assert not old.exists() and old.id not in stored_ids(rt)
    assert CALLS == []


def test_a_cancelled_task_keeps_its_time_left_to_staleness_when_the_clock_is_swapped(rt):
    cancelled = delay(10, record, "cancelled", persistent=True)
    cancelled.cancel()
    ahead = twisted_task.Clock()
    ahead.advance(1000)
    TASK_HANDLER.clock = ahead                   # its due moves to 1010: stale after 1070
    delay(1, record, "new")
    assert cancelled.exists() and cancelled.id in stored_ids(rt)
    ahead.advance(70.5)
    delay(1, record, "newer")
    assert not cancelled.exists() and cancelled.id not in stored_ids(rt)


def test_stale_timeout_zero_keeps_cancelled_tasks_but_clean_stale_tasks_still_works(rt):
    TASK_HANDLER.stale_timeout = 0
    old = delay(5, record, "old", persistent=True)
    old.cancel()
    rt.advance(1000)
    delay(1, record, "new")
    assert old.exists()
    assert TASK_HANDLER.clean_stale_tasks() == 1
    assert not old.exists() and old.id not in stored_ids(rt)


def test_clean_stale_tasks_leaves_pending_and_recently_cancelled_tasks_alone(rt):
    pending = delay(5, record, "pending")
    fresh = delay(100, record, "fresh")
    fresh.cancel()
    rt.advance(4)
    assert TASK_HANDLER.clean_stale_tasks() == 0
    assert pending.active() and fresh.exists()


def test_stale_cancelled_tasks_are_dropped_at_load(rt):
    old = delay(5, record, "old", persistent=True)
    old.cancel()
    rt.advance(100)
    assert rt.reload() == 1
    assert TASK_HANDLER.get(old.id) is None and stored_ids(rt) == []


def test_evennias_now_hook_decides_staleness(rt):
    old = delay(5, record, "old")
    old.cancel()
    TASK_HANDLER._now = datetime.datetime.now() + datetime.timedelta(seconds=3600)
    TASK_HANDLER.clean_stale_tasks()
    assert not old.exists()


def test_a_cancelled_task_can_still_be_run_with_do_task_until_it_is_stale(rt):
    task = delay(5, record, "late")
    task.cancel()
    rt.advance(30)
    assert task.do_task() == "recorded ('late',)"


# -- called -------------------------------------------------------------------------------------

def test_called_stays_false_after_cancel_unlike_evennia(rt):
    # Evennia's `called` is its Deferred's: True after cancel() although the callback never
    # ran, which contradicts its own docstring ("has called the callback").
    task = delay(5, record)
    task.cancel()
    assert task.called is False


# -- the clock, clear() and create_delays() ----------------------------------------------------

def test_the_clock_can_be_swapped_for_a_twisted_clock_as_evennias_tests_do(rt):
    clock = twisted_task.Clock()
    TASK_HANDLER.clock = clock
    assert TASK_HANDLER.clock is clock and get_runtime().clock is clock
    delay(5, record, "on the new clock")
    clock.advance(4.5)
    assert CALLS == []
    clock.advance(0.5)
    assert CALLS == [(("on the new clock",), {})]
    assert now() == 5       # now() reads the same clock


def test_pauses_follow_the_swapped_clock_too(rt):
    @interactive
    def nap(caller):
        yield 3
        CALLS.append("awake")

    clock = twisted_task.Clock()
    TASK_HANDLER.clock = clock
    nap(None)
    clock.advance(3)
    assert CALLS == ["awake"]


def test_clear_drops_every_task_and_with_save_their_stored_copies(rt):
    kept = delay(5, record, "stored", persistent=True)
    delay(5, record, "memory")
    assert TASK_HANDLER.clear() is True
    rt.advance(5)
    assert CALLS == [] and len(TASK_HANDLER) == 0 and not kept.exists()
    assert stored_ids(rt) == []


def test_clear_without_save_then_load_and_create_delays_is_evennias_restart(rt):
    delay(5, record, "survivor", persistent=True)
    TASK_HANDLER.clear(False)
    rt.advance(5)
    assert CALLS == []
    assert TASK_HANDLER.load() == 1
    TASK_HANDLER.create_delays()
    rt.advance(5)
    assert CALLS == [(("survivor",), {})]


def test_create_delays_schedules_nothing_twice(rt):
    delay(5, record, "once")
    assert TASK_HANDLER.create_delays() == 0
    rt.advance(5)
    assert CALLS == [(("once",), {})]


def test_tasks_and_to_save_show_what_is_held_and_stored(rt):
    memory = delay(5, record)
    stored = delay(5, record, persistent=True)
    assert memory.id in TASK_HANDLER.tasks and stored.id in TASK_HANDLER.tasks
    assert memory.id not in TASK_HANDLER.to_save and stored.id in TASK_HANDLER.to_save


# -- when the time counts from -----------------------------------------------------------------

def test_the_first_delay_counts_from_the_call_not_from_when_the_store_opened(tmp_path):
    clock = twisted_task.Clock()
    with VirtualRuntime(db_path=tmp_path / "slow.db") as rt:
        rt.clock = clock
        store = rt.store
        reserve = type(store).reserve_id_block

        def slow_first_use(self):
            clock.advance(0.0625)   # opening and locking the store takes time on a real disk
            return reserve(self)

        store.reserve_id_block = slow_first_use.__get__(store)
        first = delay(1, record, "first")             # typed at 0
        second = delay(0.96875, record, "second")     # typed at 0.0625, due at 1.03125
        assert first.due == 1.0
        clock.advance(0.9375)
        assert CALLS == [(("first",), {})]
        clock.advance(0.03125)
        assert CALLS == [(("first",), {}), (("second",), {})]


# -- a generator nothing drives ----------------------------------------------------------------

def pausing_callback(who):
    CALLS.append("started")
    yield 5
    CALLS.append("never")


async def awaiting_callback():
    CALLS.append("never either")


def test_a_delay_callback_returning_a_generator_is_warned_about_once_naming_it(rt, logged):
    delay(1, pausing_callback, "x")
    delay(2, pausing_callback, "y")
    rt.advance(10)
    warnings = logged.texts(LogLevel.warn)
    assert len(warnings) == 1
    assert "tests.test_task_housekeeping.pausing_callback" in warnings[0]
    assert "@interactive" in warnings[0] and "func()" in warnings[0]
    assert CALLS == []      # a generator function's body does not even start


def test_a_delay_callback_that_is_a_coroutine_function_is_warned_about_and_closed(rt, logged):
    delay(1, awaiting_callback)
    rt.advance(1)
    [warning] = logged.texts(LogLevel.warn)
    assert "awaiting_callback" in warning and "coroutine" in warning
    assert CALLS == []
    assert inspect.iscoroutinefunction(awaiting_callback)
