"""``delay(..., persistent=True)``: stored before it returns, restored by ``load()``, in virtual time.

A reload is simulated in place with ``rt.reload()``; a server that was down for a while is two
runtimes on the same store file, the second one's clock moved on before it loads.
"""

from __future__ import annotations

import math
import random
import sqlite3
import sys
import textwrap

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from evasync import (TASK_HANDLER, NotPersistableError, create_object, delay, get_object,
                     get_runtime)
from evasync.runtime import Runtime
from evasync.store import Store
from evasync.tasks import OVERDUE_CHUNK
from evasync.testing import VirtualRuntime

from . import _support
from ._store_files import copy_as_killed
from ._support import CALLS, CmdBoil, Hero, Kettle, record


def stored_ids(runtime) -> list[int]:
    return [row[0] for row in runtime.store.tasks()]


def fired_args(calls=CALLS) -> list:
    return [args for args, _ in calls]


# -- surviving a reload ------------------------------------------------------------------------

def test_a_persistent_task_survives_a_reload_and_fires_at_its_time(rt):
    task = delay(10, record, "boiled", persistent=True)
    rt.advance(4)
    assert rt.reload() == 1
    assert CALLS == []
    rt.advance(5.75)
    assert CALLS == []
    rt.advance(0.25)
    assert CALLS == [(("boiled",), {})]
    assert TASK_HANDLER.get(task.get_id()) is None and stored_ids(rt) == []


def test_a_non_persistent_task_does_not_survive_a_reload(rt):
    delay(10, record, "forgotten")
    assert rt.reload() == 0
    rt.advance(20)
    assert CALLS == []


def test_the_task_is_durable_before_delay_returns(rt, tmp_path):
    # The first is committed on its own, the second logged (the store's task log).
    tasks = [delay(3600, record, "safe", persistent=True) for _ in range(2)]
    assert len(rt.store._pending) == 1
    copy = Store(copy_as_killed(rt.store, tmp_path))        # the next start, after a kill now
    try:
        assert [row[:4] for row in copy.tasks()] == [
            (task.get_id(), task.due, "scheduled", '{"path":"tests._support:record"}')
            for task in tasks]
    finally:
        copy.close()


def test_a_logged_task_is_moved_into_the_database_once(rt, tmp_path):
    first = [delay(3600, record, "one", persistent=True) for _ in range(2)]
    rt.store.flush()
    other = sqlite3.connect(rt.store.path)        # sees only what is committed
    try:
        assert other.execute("SELECT id FROM tasks").fetchall() == [
            (task.get_id(),) for task in first]
    finally:
        other.close()
    second = [delay(3600, record, "two", persistent=True) for _ in range(2)]
    # A process killed now leaves a log holding the last task only: the ones moved already
    # are not added again (the log's generation is the database's old one).
    copy = Store(copy_as_killed(rt.store, tmp_path))
    try:
        assert [row[0] for row in copy.tasks()] == [task.get_id() for task in first + second]
    finally:
        copy.close()


def test_a_task_can_be_found_again_by_id_after_a_reload(rt):
    task_id = delay(10, record, "found", persistent=True).get_id()
    rt.reload()
    again = TASK_HANDLER.get(task_id)
    assert again is not None and again.get_id() == task_id
    assert again.active() and again.persistent
    assert again.cancel() is True
    rt.advance(20)
    assert CALLS == []


def test_a_graceful_reload_never_fires_a_task_twice(rt):
    delay(1, record, "once", persistent=True)
    delay(5, record, "later", persistent=True)
    rt.advance(1)
    rt.reload()
    rt.advance(10)
    rt.reload()
    rt.advance(10)
    assert fired_args() == [("once",), ("later",)]


def test_load_twice_schedules_nothing_twice(rt):
    delay(5, record, "once", persistent=True)
    rt.reload()
    assert TASK_HANDLER.load() == 0
    assert TASK_HANDLER.load() == 0
    rt.advance(5)
    assert fired_args() == [("once",)]


def test_load_after_delay_in_the_same_process_schedules_nothing_twice(rt):
    task = delay(5, record, "once", persistent=True)
    assert TASK_HANDLER.load() == 0
    assert TASK_HANDLER.get(task.get_id()) is task
    rt.advance(5)
    assert fired_args() == [("once",)]


def test_removed_run_and_fired_tasks_leave_the_store(rt):
    fired = delay(1, record, persistent=True)
    removed = delay(5, record, persistent=True)
    done = delay(5, record, persistent=True)
    kept = delay(5, record, persistent=True)
    assert stored_ids(rt) == [t.get_id() for t in (fired, removed, done, kept)]
    removed.remove()
    done.do_task()
    rt.advance(1)
    assert stored_ids(rt) == [kept.get_id()]


def test_call_leaves_the_stored_task_in_place(rt):
    task = delay(5, record, "twice", persistent=True)
    task.call()
    rt.reload()
    rt.advance(5)
    assert fired_args() == [("twice",), ("twice",)]


# -- a server that was down --------------------------------------------------------------------

def test_overdue_tasks_fire_promptly_in_due_order_and_the_others_at_their_time(tmp_path):
    path = tmp_path / "game.db"
    dues = list(range(1, 2 * OVERDUE_CHUNK + 101))  # a backlog bigger than one chunk
    random.Random(2).shuffle(dues)
    with VirtualRuntime(db_path=path):
        for due in dues:
            delay(due, record, due, persistent=True)
        delay(3000, record, "on time", persistent=True)
    assert CALLS == []
    with VirtualRuntime(db_path=path) as back:
        back.advance(2000)  # the server was down until t=2000
        assert back.tasks.load() == len(dues) + 1
        assert CALLS == []  # load() schedules, it does not run anything itself
        back.advance(0)
        assert fired_args() == [(due,) for due in sorted(dues)]
        back.advance(999.75)
        assert len(CALLS) == len(dues)
        back.advance(0.25)
        assert fired_args()[-1] == ("on time",)


def test_an_overdue_task_cancelled_before_its_turn_does_not_fire(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        first = delay(1, record, "first", persistent=True).get_id()
        second = delay(2, record, "second", persistent=True).get_id()
        third = delay(3, record, "third", persistent=True).get_id()
    with VirtualRuntime(db_path=path) as back:
        back.advance(10)
        back.tasks.load()
        TASK_HANDLER.get(second).cancel()
        TASK_HANDLER.get(third).remove()
        back.advance(0)
        assert fired_args() == [("first",)]
        assert stored_ids(back) == [second] and TASK_HANDLER.get(first) is None


# -- what can be stored ------------------------------------------------------------------------

PLAIN = [
    None, True, False, 0, -7, 2**70, 1.5, -0.0, "", "tea ✓", b"", b"\x00\xffbytes",
    (), (1,), (1, (2, (3,))), [], [1, [2, [3]]], set(), {1, "1", (2, 3)},
    frozenset({4, frozenset({5})}),
    {},
    {1: "int key", "1": "str key", (2, 3): "tuple key", None: "none key", 2.5: "float key",
     b"k": "bytes key", frozenset({6}): "frozenset key", False: "bool key"},
    {"t": [1, 2]}, {"d": []}, {"o": 1},  # plain dicts that look like the store's own tags
    [{"nested": ({1: [b"deep", {7}, (8, [9])]},)}],
]


def assert_same(got, expected) -> None:
    """Equal, and of the same types all the way down (1 is not True, a list is not a tuple)."""
    assert type(got) is type(expected), (got, expected)
    if isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), (got, expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
    elif isinstance(expected, dict):
        assert len(got) == len(expected), (got, expected)
        for key, value in expected.items():
            [same_key] = [k for k in got if k == key and type(k) is type(key)]
            assert_same(same_key, key)
            assert_same(got[same_key], value)
    elif isinstance(expected, (set, frozenset)):
        assert len(got) == len(expected), (got, expected)
        for item in expected:
            [same] = [g for g in got if g == item and type(g) is type(item)]
            assert_same(same, item)
    elif isinstance(expected, float):
        assert got == expected and math.copysign(1.0, got) == math.copysign(1.0, expected)
    else:
        assert got == expected


def test_plain_data_comes_back_with_its_types_intact(rt):
    delay(1, record, *PLAIN, persistent=True, listed=list(PLAIN), nan=math.nan)
    rt.reload()
    rt.advance(1)
    [(args, kwargs)] = CALLS
    assert_same(args, tuple(PLAIN))
    assert_same(kwargs["listed"], list(PLAIN))
    assert math.isnan(kwargs["nan"])


def test_stored_objects_come_back_as_references_to_themselves(rt):
    hero = create_object(Hero, key="Hero")
    kettle = create_object(key="kettle")
    delay(1, record, hero, [kettle, (hero,)], persistent=True, owner={"who": hero})
    rt.reload()
    rt.advance(1)
    [(args, kwargs)] = CALLS
    hero_again, kettle_again = get_object(hero.id), get_object(kettle.id)
    assert hero_again is not hero  # a new instance after the reload...
    assert args[0] is hero_again and type(hero_again) is Hero  # ...the same stored object
    assert args[1][0] is kettle_again and args[1][1][0] is hero_again
    assert kwargs == {"owner": {"who": hero_again}}


def test_a_method_of_a_stored_object_fires_after_a_reload(rt):
    hero = create_object(Hero, key="Hero")
    heard = rt.listen(hero)
    delay(5, hero.shout, "dinner is ready", persistent=True)
    rt.reload()
    rt.advance(5)
    assert heard.take() == ["DINNER IS READY"]
    assert CALLS == [("shout", hero.id, "dinner is ready")]


def test_a_method_of_a_stored_object_fires_without_a_reload(rt):
    hero = create_object(Hero, key="Hero")
    task = delay(5, hero.shout, "now", persistent=True)
    results = []
    task.get_deferred().addCallback(results.append)
    rt.advance(5)
    assert results == ["NOW"]


# -- what is refused ---------------------------------------------------------------------------

def refused(rt, callback, *args, **kwargs) -> str:
    """delay() it persistently, expecting a refusal that schedules and stores nothing."""
    pending = len(rt.tasks)
    with pytest.raises(NotPersistableError) as caught:
        delay(1, callback, *args, persistent=True, **kwargs)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
    assert len(rt.tasks) == pending and stored_ids(rt) == []
    return str(caught.value)


def test_a_lambda_is_refused(rt):
    message = refused(rt, lambda: None)
    assert "<lambda>" in message
    assert "top level of an importable module" in message


def test_a_nested_function_is_refused(rt):
    def put_kettle_on():
        pass

    message = refused(rt, put_kettle_on)
    assert "put_kettle_on" in message
    assert "top level of an importable module" in message


def test_a_method_of_a_command_is_refused_with_what_to_do_instead(rt):
    message = refused(rt, CmdBoil().boil)
    assert "CmdBoil.boil" in message
    assert "move the callback onto the character" in message
    assert "module-level function" in message


def test_a_method_of_an_arbitrary_instance_is_refused(rt):
    message = refused(rt, Kettle().whistle)
    assert "Kettle.whistle" in message and "tests._support.Kettle instance" in message
    assert "module-level functions" in message


@pytest.mark.parametrize("args, kwargs, where", [
    ((1, Kettle()), {}, "argument list of record[1]"),
    ((), {"pot": Kettle()}, "keyword arguments of record['pot']"),
    (([1, {"a": (Kettle(),)}],), {}, "argument list of record[0][1]['a'][0]"),
    (({Kettle(): 1},), {}, "argument list of record[0] key"),
])
def test_an_arbitrary_object_argument_is_refused_naming_where_it_is(rt, args, kwargs, where):
    message = refused(rt, record, *args, **kwargs)
    assert where in message
    assert "tests._support.Kettle" in message
    assert "convert it to plain data" in message


def test_a_function_as_an_argument_is_refused(rt):
    message = refused(rt, record, record)
    assert "argument list of record[0]" in message and "name the function" in message


def test_a_list_that_contains_itself_is_refused(rt):
    loop: list = [1]
    loop.append(loop)
    assert "contains itself" in refused(rt, record, loop)


def test_a_deleted_object_is_refused_as_argument_and_as_owner_of_the_callback(rt):
    hero = create_object(Hero, key="Hero")
    hero.delete()
    assert "deleted game object" in refused(rt, record, hero)
    assert "deleted game object" in refused(rt, hero.shout, "hello?")


# -- what load() cannot restore ----------------------------------------------------------------

def test_a_task_whose_object_was_deleted_is_logged_and_dropped_at_load(rt, logged):
    hero = create_object(Hero, key="Hero")
    method_task = delay(1, hero.shout, "hi", persistent=True).get_id()
    argument_task = delay(2, record, "for", hero, persistent=True).get_id()
    delay(3, record, "still runs", persistent=True)
    hero.delete()
    assert rt.reload() == 1
    texts = logged.texts(LogLevel.warn)
    assert any(str(method_task) in t and f"#{hero.id}" in t and "does not exist" in t
               for t in texts), texts
    assert any(str(argument_task) in t and f"#{hero.id}" in t for t in texts), texts
    assert len(stored_ids(rt)) == 1
    rt.advance(3)
    assert fired_args() == [("still runs",)]


def test_a_task_whose_function_no_longer_exists_is_logged_and_dropped_at_load(
        rt, logged, monkeypatch):
    gone = delay(1, _support.vanishing, "never", persistent=True).get_id()
    delay(2, record, "still runs", persistent=True)
    monkeypatch.delattr(_support, "vanishing")
    assert rt.reload() == 1
    assert any(str(gone) in t and "vanishing" in t for t in logged.texts(LogLevel.warn))
    rt.advance(2)
    assert fired_args() == [("still runs",)]
    assert len(stored_ids(rt)) == 0


def test_a_task_whose_module_no_longer_imports_is_logged_and_dropped_at_load(
        rt, logged, tmp_path, monkeypatch):
    (tmp_path / "doomed_module.py").write_text(textwrap.dedent("""
        from tests._support import CALLS

        def fire(*args):
            CALLS.append(("doomed", args))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import doomed_module

    gone = delay(1, doomed_module.fire, persistent=True).get_id()
    delay(2, record, "still runs", persistent=True)
    (tmp_path / "doomed_module.py").unlink()
    monkeypatch.delitem(sys.modules, "doomed_module")
    assert rt.reload() == 1
    assert any(str(gone) in t and "doomed_module" in t for t in logged.texts(LogLevel.warn))
    rt.advance(2)
    assert fired_args() == [("still runs",)]


@pytest.mark.parametrize("callback, args, kwargs", [
    ('{"path": "tests._support:record"}', "{not json", '{"d":[]}'),
    ('{"path": "tests._support:record"}', '{"t": 5}', '{"d":[]}'),
    ('{"path": "tests._support:record"}', '{"zz": []}', '{"d":[]}'),
    ('{"path": "tests._support:record"}', '{"t":[]}', '{"d":[[[1], 2]]}'),
    ('{"path": "tests._support:CALLS"}', '{"t":[]}', '{"d":[]}'),
    ('{"neither": 1}', '{"t":[]}', '{"d":[]}'),
])
def test_a_damaged_stored_task_is_quarantined_and_start_up_continues(
        rt, logged, callback, args, kwargs):
    delay(2, record, "still runs", persistent=True)
    rt.store.add_task(1, 1.0, "scheduled", callback, args, kwargs)
    assert rt.reload() == 1
    assert any("stored task 1 cannot be restored" in t for t in logged.texts(LogLevel.warn))
    rt.advance(2)
    assert fired_args() == [("still runs",)]
    assert 1 not in stored_ids(rt)
    [(quarantined, reason)] = rt.store.quarantined()   # kept, with the reason, not deleted
    assert quarantined == 1 and reason


# -- states that survive a reload --------------------------------------------------------------

def test_cancelled_and_paused_tasks_survive_a_reload_in_their_state(rt):
    cancelled = delay(5, record, "cancelled", persistent=True)
    paused = delay(5, record, "paused", persistent=True)
    cancelled.cancel()
    paused.pause()
    assert rt.reload() == 2
    cancelled, paused = TASK_HANDLER.get(cancelled.get_id()), TASK_HANDLER.get(paused.get_id())
    assert cancelled.exists() and not cancelled.active() and not cancelled.paused
    assert paused.exists() and paused.active() and paused.paused
    rt.advance(10)
    assert CALLS == []
    paused.unpause()
    rt.advance(0)  # overdue: fires at once
    assert fired_args() == [("paused",)]
    assert cancelled.do_task() == "recorded ('cancelled',)"
    assert stored_ids(rt) == []


def test_a_paused_task_unpaused_after_a_reload_keeps_its_original_time(rt):
    task = delay(10, record, persistent=True)
    rt.advance(2)
    task.pause()
    rt.reload()
    TASK_HANDLER.get(task.get_id()).unpause()
    rt.advance(7.75)
    assert CALLS == []
    rt.advance(0.25)
    assert len(CALLS) == 1


def test_an_unpaused_task_is_stored_as_scheduled_again(rt):
    task = delay(10, record, persistent=True)
    task.pause()
    task.unpause()
    rt.reload()
    rt.advance(10)
    assert len(CALLS) == 1


def test_ids_stay_unique_between_tasks_stored_before_and_made_after_a_reload(rt):
    old = {delay(5, record, persistent=True).get_id() for _ in range(10)}
    rt.reload()
    new = {delay(5, record, persistent=True).get_id() for _ in range(10)}
    assert not old & new and min(new) > max(old)
    assert set(stored_ids(rt)) == old | new


# -- a load that takes time --------------------------------------------------------------------

class BusyClock(Clock):
    """A clock on which every ``callLater`` takes a second: a load() of a very large store."""

    def callLater(self, delay, callable, *args, **kwargs):
        call = super().callLater(delay, callable, *args, **kwargs)
        self.rightNow += 1.0
        return call


def test_a_slow_load_keeps_due_order_and_original_times(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path) as first:
        first.advance(10)
        delay(0, record, "overdue", persistent=True)  # due at 10
        delay(40.5, record, "due during the load", persistent=True)  # due at 50.5
        delay(190, record, "due later", persistent=True)  # due at 200
    clock = BusyClock()
    clock.advance(50)  # the server comes back at t=50
    back = Runtime(clock=clock, db_path=path)
    try:
        back.tasks.load()  # scheduling takes the clock past 50.5
        clock.advance(0)
        assert fired_args() == [("overdue",), ("due during the load",)]
        clock.advance(199.75 - clock.seconds())
        assert len(CALLS) == 2
        clock.advance(0.25)
        assert fired_args()[-1] == ("due later",)
    finally:
        back.close()


def test_a_classmethod_is_stored_by_its_path_and_fires_after_a_reload(rt):
    from ._support import Almanac

    delay(5, Almanac.note, "spring", persistent=True)
    rt.reload()
    rt.advance(5)
    assert _support.CALLS == [(("spring",), {})]


def test_a_partial_is_refused_with_what_to_do_instead(rt):
    import functools

    with pytest.raises(NotPersistableError, match="functools.partial.*Name the function itself"):
        delay(5, functools.partial(_support.record, "x"), persistent=True)


def reload_from_a_callback(marker):
    _support.CALLS.append(((marker,), {}))
    get_runtime().reload()


def test_a_persistent_callback_that_reloads_the_runtime_runs_once(rt):
    delay(1, reload_from_a_callback, "reloading", persistent=True)
    rt.advance(1)
    rt.advance(10)
    rt.reload()
    rt.advance(10)
    assert _support.CALLS == [(("reloading",), {})]
    assert list(rt.store.tasks()) == []


def test_a_failed_delete_after_firing_is_logged_retried_at_reload_and_leaves_no_transaction(
        rt, logged, tmp_path):
    blocker = sqlite3.connect(rt.store.path, timeout=0)
    delay(1, _support.record, "first", persistent=True)
    rt.store.conn.execute("PRAGMA busy_timeout = 0")
    blocker.execute("BEGIN IMMEDIATE")          # another writer holds the lock
    rt.advance(1)                               # fires; deleting its row fails
    assert _support.CALLS == [(("first",), {})]
    assert logged.at(LogLevel.error)
    assert not rt.store.conn.in_transaction
    blocker.execute("ROLLBACK")
    blocker.close()
    delay(5, _support.record, "second", persistent=True)   # committed despite the failure
    rt.reload()                                 # retries the delete: "first" is gone
    rt.advance(5)
    assert _support.CALLS == [(("first",), {}), (("second",), {})]


def note_stored_ids(marker):
    _support.CALLS.append(((marker, [row[0] for row in get_runtime().store.tasks()]), {}))


def test_do_task_keeps_the_stored_copy_until_the_callback_has_run(rt):
    task = delay(60, note_stored_ids, "now", persistent=True)
    task.do_task()
    assert _support.CALLS == [(("now", [task.id]), {})]     # still stored while it ran
    assert list(rt.store.tasks()) == [] and not task.exists()
