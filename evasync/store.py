"""The SQLite store: persistent tasks, game objects and their ``db`` attributes, in one file.

The schema is versioned with SQLite's ``user_version``; each entry of ``_MIGRATIONS`` brings a
store from one version to the next, so an older file is upgraded in place on open and a file from
a newer evasync is refused rather than misread.

Durability: the store runs in WAL mode with ``synchronous=NORMAL`` and commits every change before
the call that made it returns. A committed change survives the process being killed (SIGKILL
included); an operating-system crash or power loss may lose the last few commits.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Iterable, Iterator

from .errors import StoreError

DEFAULT_PATH = "evasync.db"

#: Ids are handed out in blocks so that non-persistent tasks never touch the disk; a new process
#: always takes a fresh block, so an id is never given out twice, not even across a crash.
ID_BLOCK = 1 << 20

_MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('next_id_block', 1);
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        due REAL NOT NULL,
        state TEXT NOT NULL,
        callback TEXT NOT NULL,
        args TEXT NOT NULL,
        kwargs TEXT NOT NULL
    );
    CREATE TABLE objects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        typeclass TEXT NOT NULL,
        key TEXT NOT NULL
    );
    CREATE TABLE attributes (
        obj_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (obj_id, name)
    );
    """,
    # version 2: accounts of the demo server (evasync.server); passwords are salted slow hashes
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        password TEXT NOT NULL,
        character_id INTEGER NOT NULL,
        created REAL NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)
#: Tables every evasync store has (from version 1 on): how a foreign SQLite file is told apart.
_TABLES = {"meta", "tasks", "objects", "attributes"}


def default_path() -> str:
    """The store file used when none is given: ``$EVASYNC_DB``, else ``evasync.db`` here."""
    return os.environ.get("EVASYNC_DB") or DEFAULT_PATH


class Store:
    """One SQLite file. Opened lazily on first use; every write is committed at once."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path) if path is not None else default_path()
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    # -- opening ---------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise StoreError(f"evasync store {os.path.abspath(self.path)!r} was closed "
                                 "(its runtime was reloaded or closed); use the current "
                                 "runtime's store")
            self._conn = self._open()
        return self._conn

    def _fail(self, why: str) -> StoreError:
        return StoreError(f"evasync store {os.path.abspath(self.path)!r}: {why}. "
                          "The file was left untouched; fix or move it (or point EVASYNC_DB "
                          "at another file) and start again.")

    def _open(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            raise self._fail("is a directory")
        if os.path.exists(self.path) and not os.access(self.path, os.R_OK | os.W_OK):
            raise self._fail("is not readable and writable by this process")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(f"cannot be opened ({exc})") from None
        try:
            self._check_and_migrate(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail(f"is unreadable or corrupted ({exc})") from None
        return conn

    def _check_and_migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise self._fail(f"has schema version {version}, newer than this evasync "
                             f"understands ({SCHEMA_VERSION}); upgrade evasync")
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise self._fail("is an SQLite database but not an evasync store")
        else:
            status = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if status != "ok":
                raise self._fail(f"failed SQLite's integrity check ({status})")
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if not _TABLES <= tables:
                raise self._fail(f"is an SQLite database with user_version {version} but not an "
                                 f"evasync store (missing tables: {sorted(_TABLES - tables)})")
        for number in range(version, SCHEMA_VERSION):
            conn.executescript("BEGIN;" + _MIGRATIONS[number]
                               + f"; PRAGMA user_version = {number + 1}; COMMIT;")

    def close(self) -> None:
        """Close the file; the store refuses to be used afterwards (a reload makes a new one)."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- ids -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end, rolled back on any error (re-raised),
        so a failed write never leaves the connection inside a transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def reserve_id_block(self) -> int:
        """Reserve the next block of ids; returns its first id (committed before returning)."""
        with self._transaction() as conn:
            block = conn.execute("SELECT value FROM meta WHERE name='next_id_block'").fetchone()[0]
            conn.execute("UPDATE meta SET value=? WHERE name='next_id_block'", (block + 1,))
        return block * ID_BLOCK

    # -- tasks -----------------------------------------------------------------------------

    def add_task(self, task_id: int, due: float, state: str, callback: str, args: str,
                 kwargs: str) -> None:
        self.conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                          (task_id, due, state, callback, args, kwargs))

    def set_task_state(self, task_id: int, state: str, due: float) -> None:
        self.conn.execute("UPDATE tasks SET state=?, due=? WHERE id=?", (state, due, task_id))

    def delete_tasks(self, task_ids: Iterable[int]) -> None:
        with self._transaction() as conn:
            conn.executemany("DELETE FROM tasks WHERE id=?", ((i,) for i in task_ids))

    def tasks(self) -> Iterator[tuple[int, float, str, str, str, str]]:
        """All stored tasks as (id, due, state, callback, args, kwargs), soonest first."""
        return self.conn.execute(
            "SELECT id, due, state, callback, args, kwargs FROM tasks ORDER BY due, id")

    # -- objects ---------------------------------------------------------------------------

    def create_object(self, typeclass: str, key: str) -> int:
        cursor = self.conn.execute("INSERT INTO objects (typeclass, key) VALUES (?, ?)",
                                   (typeclass, key))
        return cursor.lastrowid

    def object_row(self, obj_id: int) -> tuple[str, str] | None:
        return self.conn.execute("SELECT typeclass, key FROM objects WHERE id=?",
                                 (obj_id,)).fetchone()

    def object_ids(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT id FROM objects")}

    def find_objects(self, key: str) -> list[int]:
        return [row[0] for row in self.conn.execute(
            "SELECT id FROM objects WHERE key=? COLLATE NOCASE ORDER BY id", (key,))]

    def set_object_key(self, obj_id: int, key: str) -> None:
        self.conn.execute("UPDATE objects SET key=? WHERE id=?", (key, obj_id))

    def delete_object(self, obj_id: int) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM attributes WHERE obj_id=?", (obj_id,))
            conn.execute("DELETE FROM objects WHERE id=?", (obj_id,))

    def attributes(self, obj_id: int) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, value FROM attributes WHERE obj_id=?",
                                      (obj_id,)))

    def set_attribute(self, obj_id: int, name: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO attributes VALUES (?, ?, ?)",
                          (obj_id, name, value))

    def delete_attribute(self, obj_id: int, name: str) -> None:
        self.conn.execute("DELETE FROM attributes WHERE obj_id=? AND name=?", (obj_id, name))

    # -- accounts (evasync.server) ---------------------------------------------------------

    def create_account(self, name: str, password: str, character_id: int, created: float) -> bool:
        """Store a new account; False if the name is taken (names are case-insensitive)."""
        try:
            self.conn.execute("INSERT INTO accounts VALUES (?, ?, ?, ?)",
                              (name, password, character_id, created))
        except sqlite3.IntegrityError:
            return False
        return True

    def account(self, name: str) -> tuple[str, str, int] | None:
        """The account named ``name`` as (name, password hash, character id), or None."""
        return self.conn.execute("SELECT name, password, character_id FROM accounts WHERE name=?",
                                 (name,)).fetchone()

    def count_accounts(self) -> int:
        return self.conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
