"""``delay`` and its task handle, in virtual time.

Each test tells one story about a task: when it fires, what its handle says at each step, and that
a handle never touches any task but its own.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, formatEventAsClassicLogText

from evasync import TASK_HANDLER, Task, delay

from ._support import CALLS, fail, record


# -- delay ------------------------------------------------------------------------------------

def test_delay_calls_the_callback_after_timedelay_with_its_arguments(rt):
    task = delay(10, record, 1, "two", three=3)
    assert isinstance(task, Task)
    rt.advance(9.75)
    assert CALLS == []
    rt.advance(0.25)
    assert CALLS == [((1, "two"), {"three": 3})]


def test_delay_returns_before_calling_even_with_zero_seconds(rt):
    task = delay(0, record, "now")
    assert CALLS == [] and not task.called
    rt.advance(0)
    assert CALLS == [(("now",), {})]


def test_tasks_fire_in_due_order_not_creation_order(rt):
    delay(3, record, "c")
    delay(1, record, "a")
    delay(2, record, "b")
    rt.advance(3)
    assert [args for args, _ in CALLS] == [("a",), ("b",), ("c",)]


def test_a_task_fires_only_once(rt):
    delay(1, record, "once")
    rt.advance(1)
    rt.advance(100)
    assert len(CALLS) == 1


@pytest.mark.parametrize("timedelay", [0, 1, 2.5, Fraction(1, 2), 10**6])
def test_any_finite_real_number_of_seconds_is_accepted(rt, timedelay):
    delay(timedelay, record)
    rt.advance(float(timedelay))
    assert len(CALLS) == 1


@pytest.mark.parametrize("timedelay, error", [
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (10**400, ValueError),
    ("5", TypeError),
    (None, TypeError),
    (True, TypeError),
    (False, TypeError),
    (1j, TypeError),
    ([1], TypeError),
])
def test_a_bad_timedelay_is_refused_at_once_and_nothing_is_scheduled(rt, timedelay, error):
    with pytest.raises(error) as caught:
        delay(timedelay, record)
    assert "timedelay" in str(caught.value)
    assert len(rt.tasks) == 0 and rt.clock.getDelayedCalls() == []


@pytest.mark.parametrize("callback", [None, "record", 42, ["record"]])
def test_a_callback_that_is_not_callable_is_refused_at_once(rt, callback):
    with pytest.raises(TypeError, match="callback must be callable"):
        delay(1, callback)
    assert len(rt.tasks) == 0 and rt.clock.getDelayedCalls() == []


def test_a_raising_callback_is_logged_with_its_traceback_and_disturbs_no_other_task(rt, logged):
    before = delay(1, record, "before")
    bad = delay(1, fail, "the kettle exploded")
    after = delay(1, record, "after")
    later = delay(2, record, "later")
    rt.advance(2)  # task.Clock would let an uncaught exception escape from here
    assert [args for args, _ in CALLS] == [("before",), ("after",), ("later",)]
    assert bad.called and not bad.exists()
    assert before.called and after.called and later.called
    [event] = logged.at(LogLevel.error)
    assert event["log_failure"].check(RuntimeError)
    text = formatEventAsClassicLogText(event)
    assert f"task {bad.get_id()}" in text
    assert "Traceback" in text and "the kettle exploded" in text and "in fail" in text


# -- get_id, active, exists --------------------------------------------------------------------

def test_get_id_is_an_int_unique_to_each_task(rt):
    ids = [delay(1, record).get_id() for _ in range(50)]
    assert all(type(i) is int for i in ids)
    assert len(set(ids)) == 50


def test_active_and_exists_through_a_tasks_life(rt):
    task = delay(5, record)
    assert task.active() and task.exists()
    rt.advance(5)
    assert not task.active() and not task.exists()


def test_a_cancelled_task_exists_but_is_not_active(rt):
    task = delay(5, record)
    task.cancel()
    assert task.exists() and not task.active()


def test_a_paused_task_is_still_active(rt):
    task = delay(5, record)
    task.pause()
    assert task.active() and task.exists()


# -- cancel, remove ----------------------------------------------------------------------------

def test_cancel_stops_the_task_firing_and_keeps_it(rt):
    task = delay(5, record)
    assert task.cancel() is True
    rt.advance(10)
    assert CALLS == [] and not task.called
    assert TASK_HANDLER.get(task.get_id()) is task


def test_cancel_returns_false_when_there_is_nothing_to_cancel(rt):
    cancelled = delay(5, record)
    cancelled.cancel()
    assert cancelled.cancel() is False
    fired = delay(1, record)
    rt.advance(1)
    assert fired.cancel() is False
    removed = delay(1, record)
    removed.remove()
    assert removed.cancel() is False


def test_cancel_a_paused_task(rt):
    task = delay(5, record)
    task.pause()
    assert task.cancel() is True
    assert not task.paused and not task.active()
    assert task.unpause() is False
    rt.advance(10)
    assert CALLS == []


def test_remove_drops_the_task(rt):
    task = delay(5, record)
    assert task.remove() is True
    assert not task.exists() and TASK_HANDLER.get(task.get_id()) is None
    rt.advance(10)
    assert CALLS == []
    assert task.remove() is False


def test_remove_a_cancelled_task(rt):
    task = delay(5, record)
    task.cancel()
    assert task.remove() is True
    assert not task.exists()


def test_remove_after_firing_returns_false(rt):
    task = delay(1, record)
    rt.advance(1)
    assert task.remove() is False


# -- do_task, call -----------------------------------------------------------------------------

def test_do_task_runs_now_returns_the_result_and_removes_the_task(rt):
    task = delay(5, record, "early")
    assert task.do_task() == "recorded ('early',)"
    assert CALLS == [(("early",), {})]
    assert task.called and not task.exists() and not task.active()
    rt.advance(10)
    assert len(CALLS) == 1


def test_do_task_runs_a_cancelled_task(rt):
    task = delay(5, record, "anyway")
    task.cancel()
    assert task.do_task() == "recorded ('anyway',)"
    assert not task.exists()


def test_do_task_on_a_finished_task_returns_false_without_calling(rt):
    task = delay(1, record)
    rt.advance(1)
    assert task.do_task() is False
    assert len(CALLS) == 1


def test_do_task_lets_the_callbacks_exception_through_and_still_removes_the_task(rt):
    task = delay(5, fail, "now")
    with pytest.raises(RuntimeError, match="now"):
        task.do_task()
    assert task.called and not task.exists()


def test_call_runs_now_and_leaves_the_task_scheduled(rt):
    task = delay(5, record, "x")
    assert task.call() == "recorded ('x',)"
    assert not task.called and task.active()   # as in Evennia: call() leaves the task as it was
    rt.advance(5)
    assert len(CALLS) == 2
    assert not task.exists()


def test_call_on_a_finished_task_returns_false_without_calling(rt):
    task = delay(1, record)
    rt.advance(1)
    assert task.call() is False
    assert len(CALLS) == 1


# -- pause, unpause ----------------------------------------------------------------------------

def test_a_paused_task_is_held_past_its_time(rt):
    task = delay(5, record)
    assert task.pause() is True
    assert task.paused
    rt.advance(100)
    assert CALLS == [] and not task.called


def test_unpause_before_the_due_time_fires_at_the_original_time(rt):
    task = delay(10, record)
    rt.advance(2)
    task.pause()
    rt.advance(3)
    assert task.unpause() is True
    assert not task.paused
    rt.advance(4.75)
    assert CALLS == []
    rt.advance(0.25)  # t=10: the pause did not push the task back
    assert len(CALLS) == 1


def test_unpause_after_the_due_time_fires_at_once(rt):
    task = delay(5, record)
    task.pause()
    rt.advance(50)
    assert CALLS == []
    task.unpause()
    rt.advance(0)  # no time passes: the next reactor turn
    assert len(CALLS) == 1 and task.called and not task.exists()


def test_pause_and_unpause_refuse_what_they_cannot_do(rt):
    task = delay(5, record)
    assert task.unpause() is False  # not paused
    task.pause()
    assert task.pause() is False  # already paused
    task.unpause()
    rt.advance(5)
    assert task.pause() is False and task.unpause() is False
    assert task.paused is False


# -- called ------------------------------------------------------------------------------------

def test_called_becomes_true_when_the_callback_runs_and_stays_true(rt):
    task = delay(1, record)
    assert task.called is False
    rt.advance(1)
    assert task.called is True
    task.remove()
    task.cancel()
    assert task.called is True


def test_called_stays_false_for_a_removed_task_that_never_ran(rt):
    task = delay(1, record)
    task.remove()
    rt.advance(1)
    assert task.called is False


# -- get_deferred ------------------------------------------------------------------------------

def test_get_deferred_fires_with_the_callbacks_result(rt):
    task = delay(3, record, "d")
    deferred = task.get_deferred()
    assert task.get_deferred() is deferred
    results = []
    deferred.addCallback(results.append)
    rt.advance(3)
    assert results == ["recorded ('d',)"]


def test_get_deferred_errbacks_with_the_callbacks_failure(rt):
    deferred = delay(3, fail, "boom").get_deferred()
    failures = []
    deferred.addErrback(failures.append)
    rt.advance(3)
    [failure] = failures
    assert failure.check(RuntimeError) and str(failure.value) == "boom"


def test_get_deferred_errbacks_with_cancelled_error_when_the_task_is_removed(rt):
    task = delay(3, record)
    failures = []
    task.get_deferred().addErrback(failures.append)
    task.remove()
    [failure] = failures
    assert failure.check(defer.CancelledError)
    rt.advance(3)
    assert CALLS == []


def test_get_deferred_fires_when_do_task_runs_the_task(rt):
    task = delay(3, record, "early")
    results = []
    task.get_deferred().addCallback(results.append)
    task.do_task()
    assert results == ["recorded ('early',)"]


def test_get_deferred_of_a_finished_task_is_none(rt):
    task = delay(1, record)
    rt.advance(1)
    assert task.get_deferred() is None


# -- stale handles and ids ---------------------------------------------------------------------

def test_a_finished_tasks_handle_never_acts_on_another_task(rt):
    old = delay(1, record, "old")
    rt.advance(1)
    others = [delay(5, record, n) for n in range(100)]
    assert old.cancel() is False
    assert old.remove() is False
    assert old.pause() is False
    assert old.unpause() is False
    assert old.do_task() is False
    assert old.call() is False
    assert old.get_deferred() is None
    assert not old.active() and not old.exists() and old.called
    assert TASK_HANDLER.get(old.get_id()) is None
    assert all(task.active() for task in others)
    rt.advance(5)
    assert len(CALLS) == 101


def test_a_removed_tasks_handle_never_acts_on_another_task(rt):
    old = delay(1, record, "old")
    old.remove()
    new = delay(1, record, "new")
    assert old.cancel() is False and old.remove() is False
    rt.advance(1)
    assert CALLS == [(("new",), {})] and new.called and not old.called


def test_ids_are_never_reused(rt):
    seen = set()
    for _ in range(5):
        batch = [delay(1, record) for _ in range(20)]
        batch[0].remove()
        batch[1].do_task()
        rt.advance(1)
        ids = {task.get_id() for task in batch}
        assert not ids & seen
        seen |= ids
    assert len(seen) == 100


def test_ids_are_never_reused_across_a_reload(rt):
    before = [delay(1, record) for _ in range(10)]
    rt.reload()
    after = [delay(1, record) for _ in range(10)]
    assert min(t.get_id() for t in after) > max(t.get_id() for t in before)
    assert all(not t.exists() and t.cancel() is False for t in before)
    rt.advance(1)
    assert len(CALLS) == 10 and all(t.called for t in after)


# -- TASK_HANDLER.get --------------------------------------------------------------------------

def test_task_handler_get_finds_pending_and_cancelled_tasks(rt):
    pending = delay(5, record)
    cancelled = delay(5, record)
    cancelled.cancel()
    paused = delay(5, record)
    paused.pause()
    assert TASK_HANDLER.get(pending.get_id()) is pending
    assert TASK_HANDLER.get(cancelled.get_id()) is cancelled
    assert TASK_HANDLER.get(paused.get_id()) is paused


def test_task_handler_get_returns_none_for_unknown_finished_and_removed_tasks(rt):
    fired = delay(1, record)
    removed = delay(5, record)
    removed.remove()
    rt.advance(1)
    assert TASK_HANDLER.get(fired.get_id()) is None
    assert TASK_HANDLER.get(removed.get_id()) is None
    assert TASK_HANDLER.get(-1) is None
    assert TASK_HANDLER.get(fired.get_id() + 10**9) is None


def test_task_handler_is_the_current_runtimes_handler(rt):
    task = delay(1, record)
    assert len(TASK_HANDLER) == 1 == len(rt.tasks)
    assert rt.tasks.get(task.get_id()) is task
