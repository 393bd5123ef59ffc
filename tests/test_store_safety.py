"""The store under pressure: one owner per file, damaged and hostile rows, failures of SQLite
itself, and files no other user can read."""

from __future__ import annotations

import json
import os
import re
import resource
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from evasync import (NotPersistableError, StoreError, create_object, delay, get_object,
                     get_runtime)
from evasync.runtime import Runtime
from evasync.store import Store, Trust
from evasync.testing import VirtualRuntime

from ._support import CALLS, record


def stored_ids(rt):
    return sorted(row[0] for row in rt.store.tasks())


def insert_row(rt, task_id, due, state, callback, args="[]", kwargs='{"d":[]}'):
    rt.store.conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                          (task_id, due, state, callback, args, kwargs))


# -- one owner per store file ------------------------------------------------------------------

def test_a_second_runtime_on_the_same_store_is_refused_naming_the_holder(tmp_path):
    path = tmp_path / "game.db"
    first = Runtime(clock=Clock(), db_path=path)
    second = Runtime(clock=Clock(), db_path=path)
    try:
        first.store.conn
        with pytest.raises(StoreError, match=rf"in use by process {os.getpid()}"):
            second.store.conn
    finally:
        first.close()
        second.close()


def test_a_symlink_to_the_store_finds_the_same_lock(tmp_path):
    path = tmp_path / "game.db"
    link = tmp_path / "other-name.db"
    link.symlink_to(path)
    first = Runtime(clock=Clock(), db_path=path)
    second = Runtime(clock=Clock(), db_path=link)
    try:
        first.store.conn
        with pytest.raises(StoreError, match="in use by process"):
            second.store.conn
    finally:
        first.close()
        second.close()


def test_another_process_holding_the_store_is_named_by_its_pid(tmp_path):
    path = tmp_path / "game.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from evasync.store import Store
            store = Store({str(path)!r})
            store.conn
            print("holding", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError, match=rf"in use by process {holder.pid}\b"):
            Store(path).conn
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    store = Store(path)          # released when its holder exited
    store.conn
    store.close()


def test_closing_a_runtime_releases_its_store_for_the_next(tmp_path):
    path = tmp_path / "game.db"
    first = Runtime(clock=Clock(), db_path=path)
    first.store.conn
    first.close()
    second = Runtime(clock=Clock(), db_path=path)
    second.store.conn
    second.close()


# -- rows that cannot be loaded ----------------------------------------------------------------

GOOD_CALLBACK = json.dumps({"path": "tests._support:record"})


@pytest.mark.parametrize("due, state, callback, args, kwargs, reason", [
    ("soon", "scheduled", GOOD_CALLBACK, "[]", '{"d":[]}', "time is not a number"),
    (float("inf"), "scheduled", GOOD_CALLBACK, "[]", '{"d":[]}', "time is not a number"),
    (1.0, "exploded", GOOD_CALLBACK, "[]", '{"d":[]}', "state"),
    (1.0, "scheduled", b"\x01", "[]", '{"d":[]}', "callback is not text"),
    (1.0, "scheduled", 42, "[]", '{"d":[]}', "malformed stored callback"),
    (1.0, "scheduled", GOOD_CALLBACK, b"[]", '{"d":[]}', "must be JSON text"),
    (1.0, "scheduled", GOOD_CALLBACK, "5", '{"d":[]}', "arguments are not a list"),
    (1.0, "scheduled", GOOD_CALLBACK, "[]", '{"d":[[1, 2]]}', "keyword arguments"),
    (1.0, "scheduled", GOOD_CALLBACK, "[" * 5000 + "]" * 5000, '{"d":[]}', "Recursion"),
])
def test_a_damaged_row_is_quarantined_with_its_reason_and_the_rest_load(
        rt, logged, due, state, callback, args, kwargs, reason):
    delay(2, record, "still runs", persistent=True)
    insert_row(rt, 7, due, state, callback, args, kwargs)
    rt.reload()
    rt.advance(2)
    assert CALLS == [(("still runs",), {})]
    [(task_id, why)] = rt.store.quarantined()
    assert task_id == 7 and reason in why
    assert 7 not in stored_ids(rt)
    assert any("stored task 7" in text for text in logged.texts(LogLevel.warn))


def test_a_quarantined_row_keeps_its_values_as_they_were(rt):
    insert_row(rt, 7, "soon", "scheduled", GOOD_CALLBACK, '["a"]')
    rt.reload()
    row = rt.store.conn.execute("SELECT id, due, state, callback, args FROM quarantine").fetchone()
    assert row == (7, "soon", "scheduled", GOOD_CALLBACK, '["a"]')


# -- only trusted code from the store ----------------------------------------------------------

@pytest.mark.parametrize("name", ["builtins:exec", "os:system", "subprocess:run",
                                  "shutil:rmtree", "antigravity:fly"])
def test_a_row_naming_code_outside_the_game_is_quarantined_never_called(rt, tmp_path, name):
    marker = tmp_path / "pwned"
    command = f"open({str(marker)!r}, 'w')" if name == "builtins:exec" else f"touch {marker}"
    insert_row(rt, 9, 0.0, "scheduled", json.dumps({"path": name}), json.dumps([command]))
    rt.reload()
    rt.advance(1)
    assert not marker.exists()
    [(task_id, why)] = rt.store.quarantined()
    assert task_id == 9 and "not trusted" in why
    if name == "antigravity:fly":
        assert "antigravity" not in sys.modules   # refused before anything was imported


def _nowhere() -> None:
    """A function whose module Python cannot find (a module made at run time, or since gone)."""


_nowhere.__module__ = "evasync_test_no_such_game.tasks"
#: Advice that would not help (a module that cannot be found) or would be unsafe (the stdlib).
TRUST_IT = ("EVASYNC_TRUSTED", "trusted=[")


@pytest.mark.parametrize("callback", [os.getcwd, subprocess.run, json.dumps, print, len])
def test_a_stdlib_or_builtin_callback_is_refused_without_advice_to_trust_it(rt, callback):
    with pytest.raises(NotPersistableError, match="not trusted") as refused:
        delay(5, callback, persistent=True)
    message = str(refused.value)
    assert "standard library" in message and "function defined in a module of your own game" \
        in message
    assert not any(advice in message for advice in TRUST_IT), message
    assert stored_ids(rt) == []


def test_a_callback_from_a_module_that_cannot_be_found_is_refused_saying_so(rt):
    with pytest.raises(NotPersistableError) as refused:
        delay(5, _nowhere, persistent=True)
    message = str(refused.value)
    assert "finds no module 'evasync_test_no_such_game'" in message
    assert "module of your own game that this process can import" in message
    assert not any(advice in message for advice in TRUST_IT), message
    assert stored_ids(rt) == []


def test_a_callback_from_an_installed_package_is_refused_saying_how_to_trust_it(rt):
    from twisted.python.reflect import fullyQualifiedName

    with pytest.raises(NotPersistableError, match="installed package") as refused:
        delay(5, fullyQualifiedName, persistent=True)
    message = str(refused.value)
    assert "EVASYNC_TRUSTED=twisted or Runtime(trusted=['twisted'])" in message
    assert "if not, call it from a function defined in a module of your own game" in message


@pytest.mark.parametrize("name, why", [("os:system", "standard library"),
                                       ("evasync_test_no_such_game:fly", "finds no module")])
def test_a_quarantined_row_says_why_without_advice_to_trust_its_module(rt, name, why):
    insert_row(rt, 9, 0.0, "scheduled", json.dumps({"path": name}))
    rt.reload()
    [(task_id, reason)] = rt.store.quarantined()
    assert task_id == 9 and why in reason
    assert not any(advice in reason for advice in TRUST_IT), reason


def test_game_code_outside_the_python_installation_is_trusted_by_default():
    trust = Trust()
    assert trust.allows("tests._support") and trust.allows("howtos.command_duration")
    assert trust.allows("evasync.server.game")
    assert not trust.allows("os") and not trust.allows("json.decoder")
    assert not trust.allows("builtins") and not trust.allows("twisted.internet")
    assert not Trust(game_code=False).allows("tests._support")


def test_more_packages_can_be_trusted_by_name(monkeypatch):
    assert Trust(["twisted"]).allows("twisted.internet.task")
    monkeypatch.setenv("EVASYNC_TRUSTED", "json, zope")
    assert Trust().allows("json") and Trust().allows("zope.interface")


def test_a_runtime_trusting_a_package_stores_its_functions(tmp_path):
    with VirtualRuntime(db_path=tmp_path / "t.db") as rt:
        with pytest.raises(NotPersistableError):
            delay(5, json.dumps, [1], persistent=True)
    with VirtualRuntime(db_path=tmp_path / "t2.db") as rt:
        rt.trust = Trust(["json"])
        rt.tasks._trust = rt.trust
        delay(5, json.dumps, [1], persistent=True)
        assert len(stored_ids(rt)) == 1


def test_a_stored_typeclass_outside_the_game_is_not_imported(rt, logged):
    hero = create_object(key="Hero")
    rt.store.conn.execute("UPDATE objects SET typeclass='antigravity:Fly' WHERE id=?", (hero.id,))
    rt.reload()
    again = get_object(hero.id)
    assert type(again).__name__ == "DefaultObject" and "antigravity" not in sys.modules
    assert any("not trusted" in text for text in logged.texts(LogLevel.warn))


# -- what cannot be read back is never accepted ------------------------------------------------

def nested(depth):
    value = "core"
    for _ in range(depth):
        value = (value,)
    return value


def test_data_nested_deeper_than_the_decoder_reads_is_refused_at_delay_time(rt):
    with pytest.raises(NotPersistableError, match="nested more than 100"):
        delay(5, record, nested(495), persistent=True)
    assert stored_ids(rt) == []


def test_data_nested_as_deep_as_allowed_comes_back_after_a_reload(rt):
    delay(5, record, nested(99), persistent=True)
    rt.reload()
    rt.advance(5)
    assert CALLS == [((nested(99),), {})]


# -- SQLite's own failures ---------------------------------------------------------------------

class FailingCommit:
    """A connection whose next COMMIT fails, as it does when the disk fails at that moment."""

    def __init__(self, conn):
        self._conn = conn
        self.fail_next = True

    def execute(self, sql, *args):
        if sql == "COMMIT" and self.fail_next:
            self.fail_next = False
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_commit_rolls_back_so_later_writes_still_commit(rt):
    first = delay(60, record, "first", persistent=True)
    rt.store.flush()                              # its row moves from the task log
    real = rt.store.conn
    rt.store._conn = FailingCommit(real)
    with pytest.raises(StoreError, match="deleting tasks failed: OperationalError: disk I/O"):
        first.remove()
    rt.store._conn = real
    assert not real.in_transaction
    delay(60, record, "second", persistent=True)
    rt.store.flush()
    other = sqlite3.connect(rt.store.path)       # sees only what is committed
    try:
        committed = other.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        other.close()
    assert committed == 2


def committed_count(rt, table):
    other = sqlite3.connect(rt.store.path)       # sees only what is committed
    try:
        return other.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        other.close()


def test_a_transaction_left_open_on_store_conn_refuses_writes_instead_of_swallowing_them(rt):
    hero = create_object(key="Hero")
    first = delay(60, record, "first", persistent=True)   # its block of ids is reserved
    rt.store.flush()
    attributes_before = committed_count(rt, "attributes")
    rt.store.conn.execute("BEGIN")                # a game's own transaction, never committed
    refused = "'{}': {} refused: a transaction begun on store.conn is still open"
    path = re.escape(rt.store.real_path)
    with pytest.raises(StoreError, match=refused.format(path, "storing an attribute")):
        hero.db.hp = 10
    with pytest.raises(StoreError, match=refused.format(path, "creating an object")):
        create_object(key="Villain")
    # A persistent delay is logged beside the database: durable, whatever the transaction.
    # Its move into the database waits for the transaction's end.
    logged = delay(60, record, "logged", persistent=True)
    with pytest.raises(StoreError, match=refused.format(path, "moving logged tasks into the database")):
        rt.store.flush()
    rt.store.conn.execute("ROLLBACK")
    assert sorted(rt.tasks.tasks) == [first.id, logged.id]
    hero.db.hp = 10
    rt.store.flush()
    assert committed_count(rt, "tasks") == 2
    assert committed_count(rt, "attributes") == attributes_before + 1
    rt.reload()
    assert stored_ids(rt) == [first.id, logged.id]


@pytest.fixture
def file_size_limit():
    """Set the largest file this process may write (bytes); restored after the test. Python
    ignores SIGXFSZ, so a write past it is cut short or fails with EFBIG, as on a full disk."""
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda size: resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, before)


def test_a_full_disk_is_a_store_error_and_loses_nothing_acknowledged(rt, file_size_limit):
    kept = delay(60, record, "kept", persistent=True)
    size = os.path.getsize(rt.store.task_log_path)
    file_size_limit(size + 100)                   # room for part of the next line only
    with pytest.raises(StoreError, match="storing a task failed: writing its task log .*"):
        delay(60, record, "x" * 1000, persistent=True)
    assert os.path.getsize(rt.store.task_log_path) == size   # the torn line is cut off
    file_size_limit(resource.RLIM_INFINITY)
    after = delay(60, record, "after", persistent=True)
    rt.reload()
    assert stored_ids(rt) == [kept.id, after.id]


def test_a_full_database_keeps_logged_tasks_in_the_log_until_it_has_room(rt, logged):
    kept = delay(60, record, "kept", persistent=True)   # committed on its own
    conn = rt.store.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")   # the database is full from now on
    big = delay(60, record, "x" * 100_000, persistent=True)   # logged: acknowledged
    with pytest.raises(StoreError, match="moving logged tasks into the database failed.*full"):
        rt.store.flush()
    rt.reload()           # closing cannot move it either: the log keeps it for the next start
    assert any("the task log keeps them" in text for text in logged.texts(LogLevel.error))
    assert stored_ids(rt) == [kept.id, big.id]    # the new connection has room again


def test_every_store_error_names_the_file(rt):
    rt.store.conn.execute("DROP TABLE attributes")
    hero_id = rt.store.create_object("evasync.objects:DefaultCharacter", "Hero")
    with pytest.raises(StoreError, match=rf"{rt.store.real_path}.*reading attributes"):
        rt.store.attributes(hero_id)


# -- durability and file modes -----------------------------------------------------------------

def test_synchronous_full_is_a_setting(tmp_path, monkeypatch):
    store = Store(tmp_path / "a.db", synchronous="FULL")
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()
    monkeypatch.setenv("EVASYNC_SYNCHRONOUS", "full")
    store = Store(tmp_path / "b.db")
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()
    assert Store(tmp_path / "c.db", synchronous="NORMAL").synchronous == "NORMAL"
    with pytest.raises(ValueError, match="OFF"):
        Store(tmp_path / "d.db", synchronous="OFF")


def test_the_store_files_are_readable_by_their_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        with VirtualRuntime(db_path=tmp_path / "game.db"):
            delay(5, record, persistent=True)
            create_object(key="Hero").db.secret = "hash"
            names = ["game.db", "game.db-wal", "game.db-shm", "game.db-tasklog", "game.db.lock"]
            modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in names}
    finally:
        os.umask(old)
    assert modes == {name: 0o600 for name in names}


def test_the_default_runtime_keeps_working_after_all_this(rt):
    assert get_runtime() is rt
