"""A store's files as a killed process leaves them, read or copied without opening the store
(which would move its task log into the database)."""

from __future__ import annotations

import os
import pathlib
import shutil
import sqlite3
from typing import Any

from evasync.store import TASK_LOG_SUFFIX, Store, _parse_log

#: The store's files that hold its data (the lock file aside, which the system releases).
SUFFIXES = ("", "-wal", TASK_LOG_SUFFIX)


def copy_as_killed(store: Store, folder: pathlib.Path) -> pathlib.Path:
    """``store``'s files copied to ``folder`` as they are now, as a process killed at this
    moment leaves them; the path of the copied store (``game.db``)."""
    for suffix in SUFFIXES:
        if os.path.exists(store.real_path + suffix):
            shutil.copyfile(store.real_path + suffix, folder / ("game.db" + suffix))
    return folder / "game.db"


def stored_rows(path: str | os.PathLike) -> list[tuple[Any, ...]]:
    """Every task row the store at ``path`` holds, (id, due, state, callback, args, kwargs) by
    id: the database's and its task log's not moved into it yet, read without changing either
    (a running server may hold the store). The log is read first and the database in one
    snapshot after it: a move in between shows its rows in the database, whose generation then
    says the log read is an old one."""
    log = pathlib.Path(os.path.realpath(path) + TASK_LOG_SUFFIX)
    data = log.read_bytes() if log.exists() else b""
    with sqlite3.connect(path) as conn:
        conn.execute("BEGIN")  # one snapshot for both reads
        rows = conn.execute("SELECT id, due, state, callback, args, kwargs FROM tasks").fetchall()
        generation = conn.execute("SELECT value FROM meta WHERE name='task_log'").fetchone()[0]
        conn.execute("COMMIT")
    logged, damaged = _parse_log(data, generation)
    assert not damaged, damaged
    return sorted({row[0]: row for row in rows + logged}.values())
