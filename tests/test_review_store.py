"""A hostile review of the store and the task lifecycle: rows written by another program and
odd uses of the handler, each checked against what the docs promise."""

from __future__ import annotations

import json

import pytest

from evasync import NotPersistableError, StoreError, create_object, delay, get_runtime
from evasync.store import Store
from evasync.testing import VirtualRuntime

from ._support import CALLS, Hero, record


def insert_row(rt, task_id, callback, args="[]", due=0.0, state="scheduled"):
    rt.store.conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                          (task_id, due, state, callback, args, '{"d":[]}'))


# -- a stored row may not call evasync's own classes -------------------------------------------

def test_a_row_naming_an_evasync_class_is_quarantined_not_called(rt):
    # VirtualRuntime() installs itself as the current runtime: a row calling it would move
    # every later delay() of the game onto a throw-away store on a clock that never moves.
    insert_row(rt, 9, json.dumps({"path": "evasync.testing:VirtualRuntime"}))
    rt.reload()
    rt.advance(1)
    assert get_runtime() is rt
    [(task_id, why)] = rt.store.quarantined()
    assert task_id == 9 and "evasync" in why


def test_an_evasync_class_is_refused_as_a_persistent_callback(rt):
    with pytest.raises(NotPersistableError, match="evasync"):
        delay(1, VirtualRuntime, persistent=True)
    assert rt.store.tasks() == []


# -- a stored object method must be a method of its class --------------------------------------

@pytest.mark.parametrize("method", ["__setattr__", "__class__", "__init__"])
def test_a_row_naming_no_method_of_the_objects_class_is_quarantined(rt, method):
    hero = create_object(Hero, key="Hero")
    insert_row(rt, 9, json.dumps({"obj": hero.id, "method": method}), '["key", "Villain"]')
    rt.reload()
    rt.advance(1)
    assert [task_id for task_id, _ in rt.store.quarantined()] == [9]


# -- load() while a persistent task's callback runs ----------------------------------------------

def reload_tasks(label):
    """A careless callback: it loads the stored tasks again while it runs."""
    CALLS.append(label)
    get_runtime().tasks.load()


def test_load_inside_a_running_callback_does_not_run_it_again(rt):
    delay(1, reload_tasks, "once", persistent=True)
    rt.advance(5)
    assert CALLS == ["once"]
    assert rt.store.tasks() == []


# -- a stored object reference must be an id ----------------------------------------------------

@pytest.mark.parametrize("ref", ["true", "1.9", '"1"'])
def test_an_object_reference_that_is_not_an_int_is_quarantined(rt, ref):
    hero = create_object(Hero, key="Hero")
    assert hero.id == 1
    insert_row(rt, 9, json.dumps({"path": "tests._support:record"}), '[{"o":%s}]' % ref)
    insert_row(rt, 10, '{"obj":%s,"method":"shout"}' % ref, '["hi"]')
    rt.reload()
    rt.advance(1)
    assert CALLS == []
    assert sorted(task_id for task_id, _ in rt.store.quarantined()) == [9, 10]


# -- a row whose id this process has not handed out yet ------------------------------------------

def test_a_row_with_an_id_not_handed_out_yet_does_not_collide_with_new_tasks(rt):
    from evasync.store import ID_BLOCK
    rt.reload()
    block = rt.store.conn.execute("SELECT value FROM meta WHERE name='next_id_block'").fetchone()[0]
    # Another program writes rows with the ids the next block will hand out first.
    for task_id in (block * ID_BLOCK, block * ID_BLOCK + 1):
        insert_row(rt, task_id, json.dumps({"path": "tests._support:record"}), '["stored"]',
                   due=10.0)
    rt.tasks.load()
    delay(5, record, "fresh")
    delay(5, record, "again", persistent=True)
    rt.advance(10)
    assert sorted(args for args, _ in CALLS) == [("again",), ("fresh",)]
    assert sorted(task_id for task_id, _ in rt.store.quarantined()) == [
        block * ID_BLOCK, block * ID_BLOCK + 1]


@pytest.mark.parametrize("value", ["'x'", "1.5", "-3", "0", str(1 << 62)])
def test_a_damaged_id_counter_is_a_store_error_and_nothing_is_stored(rt, value):
    delay(1, record, "kept", persistent=True)
    rt.store.conn.execute(f"UPDATE meta SET value={value} WHERE name='next_id_block'")
    with pytest.raises(StoreError, match=r"next block of task ids is damaged"):
        rt.reload()
    with pytest.raises(StoreError, match=r"next block of task ids is damaged"):
        delay(1, record, "new", persistent=True)
    assert [row[4] for row in rt.store.tasks()] == ['["kept"]']


# -- a failing stop hook does not leave the runtime half-stopped -------------------------------

def test_a_stop_hook_that_raises_still_stops_everything_and_closes_the_store(rt):
    def broken_hook():
        raise RuntimeError("a pool would not shut down")

    fired = []
    delay(5, fired.append, "late")
    rt.stop_hooks.append(broken_hook)
    with pytest.raises(RuntimeError, match="would not shut down"):
        rt.close()
    rt.stop_hooks.remove(broken_hook)
    with pytest.raises(StoreError, match="was closed"):
        rt.store.conn                                  # closed, its lock released
    rt.advance(10)
    assert fired == []                                 # the tasks were stopped too


def test_a_store_missing_its_quarantine_table_is_refused_when_opened(tmp_path):
    path = tmp_path / "game.db"
    first = Store(path)
    first.conn.execute("DROP TABLE quarantine")         # another program's doing
    first.close()
    second = Store(path)
    with pytest.raises(StoreError, match=r"missing tables \['quarantine'\]"):
        second.conn
    second.close()
