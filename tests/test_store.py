"""The SQLite store: made on first use, versioned, and never overwritten when it cannot be read."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from twisted.internet.task import Clock

import evasync
from evasync import TASK_HANDLER, StoreError, delay
from evasync.runtime import Runtime, set_runtime
from evasync.store import SCHEMA_VERSION, Store
from evasync.testing import VirtualRuntime

from ._support import record

TABLES = {"meta", "tasks", "objects", "attributes"}


def tables(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def user_version(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def sqlite_file(path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


# -- creation ----------------------------------------------------------------------------------

def test_the_schema_is_created_on_first_use(tmp_path):
    path = tmp_path / "game.db"
    store = Store(path)
    assert not path.exists()  # opening is lazy
    store.conn
    store.close()
    assert TABLES <= tables(path)
    assert user_version(path) == SCHEMA_VERSION >= 1


def test_a_runtime_creates_its_store_when_first_used(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        delay(5, record, "stored", persistent=True)
        assert TABLES <= tables(path)
    assert user_version(path) == SCHEMA_VERSION


def test_an_existing_store_is_opened_as_it_is(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        task_id = delay(5, record, persistent=True).get_id()
    with VirtualRuntime(db_path=path) as again:
        assert [row[0] for row in again.store.tasks()] == [task_id]


def test_the_store_runs_in_wal_mode(tmp_path):
    store = Store(tmp_path / "game.db")
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_id_blocks_are_never_handed_out_twice_even_across_opens(tmp_path):
    path = tmp_path / "game.db"
    blocks = []
    for _ in range(3):
        store = Store(path)
        blocks += [store.reserve_id_block(), store.reserve_id_block()]
        store.close()
    assert len(set(blocks)) == 6 and blocks == sorted(blocks)


# -- which file --------------------------------------------------------------------------------

def test_evasync_db_names_the_store_file(tmp_path, monkeypatch):
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("EVASYNC_DB", str(path))
    assert Store().path == str(path)
    runtime = Runtime(clock=Clock())
    try:
        assert runtime.store.path == str(path)
        runtime.tasks.load()
    finally:
        runtime.close()
    assert TABLES <= tables(path)


def test_the_default_runtime_uses_evasync_db(tmp_path, monkeypatch):
    path = tmp_path / "default.db"
    monkeypatch.setenv("EVASYNC_DB", str(path))
    previous = set_runtime(None)
    try:
        assert TASK_HANDLER.load() == 0  # makes the default runtime, on the real reactor
        assert evasync.get_runtime().store.path == str(path)
        evasync.get_runtime().close()
    finally:
        set_runtime(previous)
    assert TABLES <= tables(path)


def test_without_evasync_db_the_store_is_evasync_db_here(tmp_path, monkeypatch):
    monkeypatch.delenv("EVASYNC_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    store = Store()
    store.conn
    store.close()
    assert store.path == os.path.join(os.getcwd(), "evasync.db")
    assert TABLES <= tables(tmp_path / "evasync.db")


# -- files that are not (or no longer) a store -------------------------------------------------

def refused_untouched(path) -> str:
    """Open ``path`` as a store, expecting a StoreError and the file's bytes unchanged."""
    before = digest(path)
    with pytest.raises(StoreError) as caught:
        Store(path).conn
    assert digest(path) == before
    message = str(caught.value)
    assert os.path.abspath(path) in message
    assert "left untouched" in message
    return message


def test_a_garbage_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "game.db"
    path.write_bytes(b"these are the notes of my game, not a database\n" * 100)
    assert "unreadable or corrupted" in refused_untouched(path)


def test_a_truncated_store_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        for n in range(500):
            delay(5, record, "x" * 100, n, persistent=True)
    path.write_bytes(path.read_bytes()[:100])
    refused_untouched(path)


def test_a_store_with_damaged_pages_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        for n in range(2000):
            delay(5, record, "x" * 100, n, persistent=True)
    data = bytearray(path.read_bytes())
    page_size = 4096
    assert len(data) > 6 * page_size
    for offset in range(2 * page_size, 6 * page_size):
        data[offset] = (data[offset] * 7 + 13) & 0xFF
    path.write_bytes(bytes(data))
    assert "integrity check" in refused_untouched(path)


def test_an_sqlite_file_of_another_program_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    sqlite_file(path, "CREATE TABLE recipes (name TEXT)", "INSERT INTO recipes VALUES ('tea')")
    assert "not an evasync store" in refused_untouched(path)


def test_an_sqlite_file_of_another_program_with_a_user_version_is_refused(tmp_path):
    path = tmp_path / "other.db"
    sqlite_file(path, "CREATE TABLE recipes (name TEXT)", "PRAGMA user_version = 1")
    assert "not an evasync store" in refused_untouched(path)


def test_a_store_from_a_newer_evasync_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "game.db"
    with VirtualRuntime(db_path=path):
        delay(5, record, persistent=True)
    sqlite_file(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    message = refused_untouched(path)
    assert "newer" in message and str(SCHEMA_VERSION + 1) in message


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path).conn


def test_a_bad_store_fails_the_server_start_up_with_the_files_name(tmp_path):
    path = tmp_path / "game.db"
    path.write_bytes(b"\x00garbage" * 64)
    before = digest(path)
    with VirtualRuntime(db_path=path) as runtime:
        with pytest.raises(StoreError, match="game.db"):
            runtime.tasks.load()
        with pytest.raises(StoreError, match="game.db"):
            delay(1, record, persistent=True)
    assert digest(path) == before


def test_a_closed_store_refuses_to_be_used_and_a_reload_gets_a_fresh_one(rt):
    old = rt.store
    rt.reload()
    assert rt.store is not old
    with pytest.raises(StoreError, match="was closed"):
        old.conn
    rt.store.conn  # the new one works
