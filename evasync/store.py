"""The SQLite store: persistent tasks, game objects and their ``db`` attributes, in one file.

The schema is versioned with SQLite's ``user_version``; each entry of ``_MIGRATIONS`` brings a
store from one version to the next, so an older file is upgraded in place on open and a file from
a newer evasync is refused rather than misread.

One store file has one owner: opening it takes an exclusive OS lock on a lock file beside it
(``<store>.lock``, found through the store's real path, so a symlink or another spelling of the
path finds the same lock). A second runtime or server on the same file is refused with a
:class:`~evasync.errors.StoreError` naming the process that holds it.

Durability: the store runs in WAL mode and commits every change before the call that made it
returns. With ``synchronous=NORMAL`` (the default) a committed change survives the process being
killed (SIGKILL included), but an operating-system crash or power loss may lose the last few
commits; ``synchronous=FULL`` (``Store(path, synchronous="FULL")`` or
``EVASYNC_SYNCHRONOUS=FULL``) survives those too, at the cost of a disk flush per commit.

Every SQLite failure (a full disk, a locked or damaged file) surfaces as a ``StoreError`` that
names the file and the operation, with SQLite's error as its cause. The files the store creates
(the database, its ``-wal`` and ``-shm`` files and the lock file) are readable by their owner
only: they hold password hashes and game state.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import pathlib
import sqlite3
import stat
import time
import weakref
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ._codec import Trust  # re-exported: the store's rule for which names it may hold
from .errors import StoreError

__all__ = ["Store", "StoreError", "Trust", "count_quarantined", "default_path",
           "default_synchronous", "ID_BLOCK", "SCHEMA_VERSION", "SYNCHRONOUS"]

DEFAULT_PATH = "evasync.db"

#: Ids are handed out in blocks so that non-persistent tasks never touch the disk; a new process
#: always takes a fresh block, so an id is never given out twice, not even across a crash.
ID_BLOCK = 1 << 20

#: Blocks from this one on would hold ids too large for SQLite's 64-bit integers.
_MAX_ID_BLOCK = (1 << 63) // ID_BLOCK

#: The values ``synchronous`` may take (SQLite's ``PRAGMA synchronous``).
SYNCHRONOUS = ("NORMAL", "FULL")

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
    # version 3: task rows that could not be loaded, kept with the reason instead of deleted.
    # No column types: a damaged row is copied as it is, whatever its values hold.
    """
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        due, state, callback, args, kwargs,
        reason TEXT NOT NULL,
        quarantined REAL NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)
#: Tables every evasync store has (from version 1 on): how a foreign SQLite file is told apart.
_TABLES = {"meta", "tasks", "objects", "attributes"}
#: Tables a store of the current version has, once upgraded.
_ALL_TABLES = _TABLES | {"accounts", "quarantine"}

_T = TypeVar("_T")


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def default_path() -> str:
    """The store file used when none is given: ``$EVASYNC_DB``, else ``evasync.db`` here."""
    return os.environ.get("EVASYNC_DB") or DEFAULT_PATH


def default_synchronous() -> str:
    """``$EVASYNC_SYNCHRONOUS`` (``NORMAL`` or ``FULL``), else ``NORMAL``."""
    return os.environ.get("EVASYNC_SYNCHRONOUS") or "NORMAL"


def _sqlite_errors(what: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Turn any sqlite3 error inside the method into a StoreError naming the file and ``what``."""
    def decorate(method: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(method)
        def wrapper(self: "Store", *args: Any, **kwargs: Any) -> _T:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise self._error(what, exc) from exc
        return wrapper
    return decorate


def _flock(fd: int, patient: bool) -> None:
    """An exclusive flock on ``fd``, or OSError. ``patient``: wait up to a second for a lock a
    forked child shares with us (it lets go of its copies right after the fork)."""
    deadline = time.monotonic() + (1.0 if patient else 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) \
                    or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


#: Stores holding their locks in this process (a forked child lets go of its copies).
_LOCKED: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_LOCKED):
        store._forget_lock_in_child()
    _LOCKED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def count_quarantined(path: str | os.PathLike) -> int:
    """How many task rows the store at ``path`` holds in quarantine, read without taking the
    store's lock (a running server holds it); 0 if there is no such store or table."""
    uri = pathlib.Path(os.path.realpath(path)).as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


class Store:
    """One SQLite file. Opened (and locked) on first use; every write is committed at once.

    Args:
        path: The file; default :func:`default_path`.
        synchronous: ``"NORMAL"`` (default, or ``$EVASYNC_SYNCHRONOUS``) or ``"FULL"``: see the
            module's notes on durability.

    Raises:
        ValueError: ``synchronous`` is neither ``"NORMAL"`` nor ``"FULL"``.

    Attributes:
        path: The store file's absolute path, made absolute when the store is made (a later
            change of the working directory does not move it); symbolic links are not resolved
            (:attr:`real_path` is).
        synchronous: The durability in use, ``"NORMAL"`` or ``"FULL"``.

    The methods not shown here read and write single rows for the task handler, the game
    objects and the demo server: they are internal.
    """

    def __init__(self, path: str | os.PathLike | None = None,
                 synchronous: str | None = None) -> None:
        # Absolute now: the process may change directory before the store is (re)opened.
        self.path = os.path.abspath(os.fspath(path) if path is not None else default_path())
        self.synchronous = (synchronous or default_synchronous()).upper()
        if self.synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not "
                             f"{synchronous!r}")
        self._conn: sqlite3.Connection | None = None
        # add_task()'s own cursor, kept: a new one per insert costs about half a microsecond.
        self._task_cursor: sqlite3.Cursor | None = None
        self._lock_fds: tuple[int, ...] = ()
        self._closed = False

    @property
    def real_path(self) -> str:
        """The store file's absolute path with symlinks resolved."""
        return os.path.realpath(self.path)

    @property
    def lock_path(self) -> str:
        """The lock file beside the store (``<real path>.lock``)."""
        return self.real_path + ".lock"

    # -- opening ---------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open ``sqlite3.Connection``, in autocommit mode.

        The first use opens the file: it takes the lock, creates the file with its schema if
        it is missing, checks it and upgrades an older schema. Reading through it is safe;
        writing bypasses every check evasync makes on what the store holds. A transaction
        begun on it (``BEGIN``) must be committed or rolled back before evasync writes again:
        until then every write of evasync's (a persistent ``delay()``, a ``db`` attribute) is
        refused with StoreError, since it would be committed only with that transaction.

        Raises:
            StoreError: The file cannot be locked, opened or used as an evasync store (it is
                left untouched), or the store was closed.
        """
        if self._conn is None:
            if self._closed:
                raise StoreError(f"evasync store {self.real_path!r} was closed "
                                 "(its runtime was reloaded or closed); use the current "
                                 "runtime's store")
            self._lock()
            try:
                self._conn = self._open()
            except BaseException:
                self._unlock()
                raise
        return self._conn

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"evasync store {self.real_path!r}: {what} failed: "
                          f"{type(exc).__name__}: {exc}")

    def _stray(self, what: str) -> StoreError:
        return StoreError(f"evasync store {self.real_path!r}: {what} refused: a transaction "
                          "begun on store.conn is still open (BEGIN without COMMIT or "
                          "ROLLBACK), and what evasync wrote now would be committed only with "
                          "it, or lost with it. Commit or roll it back first.")

    def _writer(self, what: str) -> sqlite3.Connection:
        """The connection for one autocommitted write; StoreError if someone left a transaction
        open on it."""
        conn = self.conn
        if conn.in_transaction:
            raise self._stray(what)
        return conn

    def _fail(self, why: str) -> StoreError:
        return StoreError(f"evasync store {self.real_path!r}: {why}. "
                          "The file was left untouched; fix or move it (or point EVASYNC_DB "
                          "at another file) and start again.")

    def _lock(self) -> None:
        fd = self._open_lock_file()
        try:
            _flock(fd, patient=self._maybe_ours(fd))
        except OSError as exc:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise self._in_use(exc, f"process {holder} (it holds {self.lock_path!r})") from None
        # The store file itself too: another name of the same file (a hard link) has a lock
        # file of its own, but not a file of its own. (flock does not touch SQLite's fcntl locks.)
        try:
            store_fd = os.open(self._create_if_missing(), os.O_RDWR)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"evasync store {self.real_path!r} cannot be opened "
                             f"({exc.strerror})") from exc
        try:
            _flock(store_fd, patient=True)
        except OSError as exc:
            os.close(store_fd)
            os.close(fd)
            raise self._in_use(exc, "another process, through another name of the same file "
                                    "(a hard link)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fds = (fd, store_fd)
        _LOCKED.add(self)

    def _maybe_ours(self, fd: int) -> bool:
        """True if the lock may be held by a child this process forked a moment ago (it names
        this process, and no store of this process holds it): such a copy goes away at once."""
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return holder == str(os.getpid()) and not any(
            store.lock_path == self.lock_path for store in list(_LOCKED))

    def _open_lock_file(self) -> int:
        try:  # never through a symlink: a planted link would have us overwrite its target
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"evasync store {self.real_path!r}: cannot open its lock file "
                             f"{self.lock_path!r} ({exc.strerror}); if it is a symbolic link "
                             "or not yours, remove it") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            os.close(fd)
            raise StoreError(f"evasync store {self.real_path!r}: its lock file "
                             f"{self.lock_path!r} is not a plain file of this user; remove it")
        return fd

    def _in_use(self, exc: OSError, holder: str) -> StoreError:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return StoreError(f"evasync store {self.real_path!r}: cannot lock it "
                              f"({exc.strerror})")
        return StoreError(f"evasync store {self.real_path!r} is in use by {holder}. One store "
                          "has one runtime: stop that process first, or use another store file.")

    def _create_if_missing(self) -> str:
        path = self.real_path
        if os.path.isdir(path):
            raise self._fail("is a directory")
        if not os.path.exists(path):
            # Created here, owner-only, so SQLite gives its -wal and -shm files the same mode.
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise self._fail(f"cannot be created ({exc.strerror})") from None
        return path

    def _unlock(self) -> None:
        fds, self._lock_fds = self._lock_fds, ()
        _LOCKED.discard(self)
        for fd in fds:
            os.close(fd)  # closing the last descriptor releases its lock

    def _forget_lock_in_child(self) -> None:
        # A forked child shares the parent's locks; closing its copies leaves them with the
        # parent (an explicit unlock would take them away from the parent too).
        fds, self._lock_fds = self._lock_fds, ()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _open(self) -> sqlite3.Connection:
        path = self._create_if_missing()
        if not os.access(path, os.R_OK | os.W_OK):
            raise self._fail("is not readable and writable by this process")
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._fail(f"cannot be opened ({exc})") from None
        try:
            self._check_and_migrate(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
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
            tables = _table_names(conn)
            if not _TABLES <= tables:
                raise self._fail(f"is an SQLite database with user_version {version} but not an "
                                 f"evasync store (missing tables: {sorted(_TABLES - tables)})")
        for number in range(version, SCHEMA_VERSION):
            try:  # one transaction per version (executescript would commit a BEGIN of ours)
                conn.executescript("BEGIN IMMEDIATE;" + _MIGRATIONS[number]
                                   + f"; PRAGMA user_version = {number + 1}; COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        # A later version's table dropped by another program: refused now, not at the first
        # use (load() needs the quarantine table only when a row is bad).
        tables = _table_names(conn)
        if not _ALL_TABLES <= tables:
            raise self._fail(f"is an evasync store missing tables "
                             f"{sorted(_ALL_TABLES - tables)}")

    def close(self) -> None:
        """Close the file and release its lock; the store refuses to be used afterwards (a
        reload makes a new one)."""
        self._closed = True
        try:
            self._task_cursor = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            self._unlock()

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed at the end, rolled back on any error (a failed
        COMMIT included) and re-raised, so a failed write never leaves the connection inside a
        transaction where later writes would silently never commit."""
        conn = self._writer(what)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- ids -------------------------------------------------------------------------------

    @_sqlite_errors("reserving task ids")
    def reserve_id_block(self) -> int:
        """Reserve the next block of ids; returns its first id (committed before returning)."""
        with self._transaction("reserving task ids") as conn:
            block = self.next_id_block()
            conn.execute("UPDATE meta SET value=? WHERE name='next_id_block'", (block + 1,))
        return block * ID_BLOCK

    @_sqlite_errors("reading task ids")
    def next_id_block(self) -> int:
        """The block :meth:`reserve_id_block` reserves next: no id from it was handed out."""
        block = self.conn.execute("SELECT value FROM meta WHERE name='next_id_block'").fetchone()[0]
        # Another program may have written anything there; ids must stay SQLite integers.
        if type(block) is not int or not 0 < block < _MAX_ID_BLOCK:
            raise StoreError(f"evasync store {self.real_path!r}: its next block of task ids is "
                             f"damaged ({block!r} in table meta, where a whole number from 1 "
                             f"to {_MAX_ID_BLOCK - 1} belongs); no new task id can be handed out "
                             "safely. Restore the file from a backup.")
        return block

    # -- tasks -----------------------------------------------------------------------------

    def add_task(self, task_id: int, due: float, state: str, callback: str, args: str,
                 kwargs: str) -> None:
        # Written out rather than decorated: a persistent delay() pays for every call here.
        try:
            cursor = self._task_cursor
            if cursor is None:
                cursor = self._task_cursor = self.conn.cursor()
            if self._conn.in_transaction:  # one attribute: cheaper than _writer()'s call
                raise self._stray("storing a task")
            cursor.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                           (task_id, due, state, callback, args, kwargs))
        except sqlite3.Error as exc:
            raise self._error("storing a task", exc) from exc

    @_sqlite_errors("updating a task")
    def set_task_state(self, task_id: int, state: str, due: float) -> None:
        conn = self._writer("updating a task")
        conn.execute("UPDATE tasks SET state=?, due=? WHERE id=?", (state, due, task_id))

    @_sqlite_errors("deleting tasks")
    def delete_tasks(self, task_ids: Iterable[int]) -> None:
        with self._transaction("deleting tasks") as conn:
            conn.executemany("DELETE FROM tasks WHERE id=?", ((i,) for i in task_ids))

    @_sqlite_errors("deleting every task")
    def delete_all_tasks(self) -> None:
        conn = self._writer("deleting every task")
        conn.execute("DELETE FROM tasks")

    @_sqlite_errors("reading tasks")
    def tasks(self) -> list[tuple[Any, ...]]:
        """All stored tasks as (id, due, state, callback, args, kwargs), soonest first.

        Rows are returned as stored: a damaged row may hold values of any type.
        """
        return self.conn.execute(
            "SELECT id, due, state, callback, args, kwargs FROM tasks ORDER BY due, id").fetchall()

    @_sqlite_errors("quarantining tasks")
    def quarantine_tasks(self, reasons: dict[int, str], when: float) -> None:
        """Move the task rows ``reasons`` names to the quarantine table, each with its reason."""
        with self._transaction("quarantining tasks") as conn:
            for task_id, reason in reasons.items():
                conn.execute(
                    "INSERT OR REPLACE INTO quarantine SELECT id, due, state, callback, args, "
                    "kwargs, ?, ? FROM tasks WHERE id=?", (reason, when, task_id))
                conn.execute("DELETE FROM tasks WHERE id=?", (task_id,))

    @_sqlite_errors("reading quarantined tasks")
    def quarantined(self) -> list[tuple[int, str]]:
        """The task rows :meth:`TaskHandler.load() <evasync.TaskHandler.load>` could not
        restore, as ``(id, reason)`` pairs, oldest quarantine first (then by id).

        Quarantined rows stay in the store's ``quarantine`` table with their columns as they
        were, and the reason; evasync never deletes or retries them.
        """
        return self.conn.execute(
            "SELECT id, reason FROM quarantine ORDER BY quarantined, id").fetchall()

    # -- objects ---------------------------------------------------------------------------

    @_sqlite_errors("creating an object")
    def create_object(self, typeclass: str, key: str) -> int:
        conn = self._writer("creating an object")
        cursor = conn.execute("INSERT INTO objects (typeclass, key) VALUES (?, ?)",
                              (typeclass, key))
        return cursor.lastrowid

    @_sqlite_errors("reading an object")
    def object_row(self, obj_id: int) -> tuple[str, str] | None:
        return self.conn.execute("SELECT typeclass, key FROM objects WHERE id=?",
                                 (obj_id,)).fetchone()

    @_sqlite_errors("reading object ids")
    def object_ids(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT id FROM objects")}

    @_sqlite_errors("searching objects")
    def find_objects(self, key: str) -> list[int]:
        return [row[0] for row in self.conn.execute(
            "SELECT id FROM objects WHERE key=? COLLATE NOCASE ORDER BY id", (key,))]

    @_sqlite_errors("renaming an object")
    def set_object_key(self, obj_id: int, key: str) -> None:
        conn = self._writer("renaming an object")
        conn.execute("UPDATE objects SET key=? WHERE id=?", (key, obj_id))

    @_sqlite_errors("deleting an object")
    def delete_object(self, obj_id: int) -> None:
        with self._transaction("deleting an object") as conn:
            conn.execute("DELETE FROM attributes WHERE obj_id=?", (obj_id,))
            conn.execute("DELETE FROM objects WHERE id=?", (obj_id,))

    @_sqlite_errors("reading attributes")
    def attributes(self, obj_id: int) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, value FROM attributes WHERE obj_id=?",
                                      (obj_id,)))

    @_sqlite_errors("storing an attribute")
    def set_attribute(self, obj_id: int, name: str, value: str) -> None:
        conn = self._writer("storing an attribute")
        conn.execute("INSERT OR REPLACE INTO attributes VALUES (?, ?, ?)", (obj_id, name, value))

    @_sqlite_errors("deleting an attribute")
    def delete_attribute(self, obj_id: int, name: str) -> None:
        conn = self._writer("deleting an attribute")
        conn.execute("DELETE FROM attributes WHERE obj_id=? AND name=?", (obj_id, name))

    # -- accounts (evasync.server) ---------------------------------------------------------

    @_sqlite_errors("creating an account")
    def create_account(self, name: str, password: str, character_id: int, created: float) -> bool:
        """Store a new account; False if the name is taken (names are case-insensitive)."""
        try:
            conn = self._writer("creating an account")
            conn.execute("INSERT INTO accounts VALUES (?, ?, ?, ?)",
                         (name, password, character_id, created))
        except sqlite3.IntegrityError:
            return False
        return True

    @_sqlite_errors("reading an account")
    def account(self, name: str) -> tuple[str, str, int] | None:
        """The account named ``name`` as (name, password hash, character id), or None."""
        return self.conn.execute("SELECT name, password, character_id FROM accounts WHERE name=?",
                                 (name,)).fetchone()

    @_sqlite_errors("counting accounts")
    def count_accounts(self) -> int:
        return self.conn.execute("SELECT count(*) FROM accounts").fetchone()[0]
