"""The SQLite store: persistent tasks, game objects and their ``db`` attributes, in one file.

The schema is versioned with SQLite's ``user_version``; each entry of ``_MIGRATIONS`` brings a
store from one version to the next, so an older file is upgraded in place on open and a file from
a newer evasync is refused rather than misread.

One store file has one owner: opening it takes an exclusive OS lock on a lock file beside it
(``<store>.lock``, found through the store's real path, so a symlink or another spelling of the
path finds the same lock). A second runtime or server on the same file is refused with a
:class:`~evasync.errors.StoreError` naming the process that holds it.

Durability: the store runs in WAL mode and commits every change before the call that made it
returns, with one exception, new persistent tasks that follow another closely: the first task
after a quiet moment is committed on its own, and :meth:`Store.add_task` appends each of the
ones after it to the *task log* beside the store (``<store>-tasklog``), one line with its
checksum, until :meth:`Store.flush` moves the rows logged so far into the ``tasks`` table in one
transaction (it runs :data:`FLUSH_AFTER` seconds after the first on a running reactor, before
anything reads or changes the stored tasks, every :data:`FLUSH_ROWS` rows, and at close). One
``write()`` of a line is what makes a burst of persistent ``delay()`` calls cheaper than an
SQLite commit each, and it is as durable: opening the store replays a log whose rows were not
moved yet, so a task logged before the process died is there after it. The log carries a
generation number that the database's ``meta`` table carries too and each move bumps in its
transaction, so a log whose rows were moved already is never replayed again, and a torn last
line (the process died while writing it, before ``delay()`` returned) is ignored.

With ``synchronous=NORMAL`` (the default) a committed change or a logged task survives the
process being killed (SIGKILL included), but an operating-system crash or power loss may lose
the last few; ``synchronous=FULL`` (``Store(path, synchronous="FULL")`` or
``EVASYNC_SYNCHRONOUS=FULL``) survives those too, at the cost of a disk flush per commit and per
logged task.

Every SQLite failure (a full disk, a locked or damaged file) surfaces as a ``StoreError`` that
names the file and the operation, with SQLite's error as its cause. The files the store creates
(the database, its ``-wal`` and ``-shm`` files, the task log and the lock file) are readable
by their owner only: they hold password hashes and game state.
"""

from __future__ import annotations

import atexit
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
import zlib
from typing import Any, Callable, Iterable, Iterator, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from ._codec import Trust  # re-exported: the store's rule for which names it may hold
from .errors import StoreError

__all__ = ["Store", "StoreError", "Trust", "count_quarantined", "default_path",
           "default_synchronous", "FLUSH_AFTER", "FLUSH_ROWS", "ID_BLOCK", "SCHEMA_VERSION",
           "SYNCHRONOUS", "TASK_LOG_SUFFIX"]

log = Logger()

DEFAULT_PATH = "evasync.db"

#: Ids are handed out in blocks so that non-persistent tasks never touch the disk; a new process
#: always takes a fresh block, so an id is never given out twice, not even across a crash.
ID_BLOCK = 1 << 20

#: Blocks from this one on would hold ids too large for SQLite's 64-bit integers.
_MAX_ID_BLOCK = (1 << 63) // ID_BLOCK

#: The values ``synchronous`` may take (SQLite's ``PRAGMA synchronous``).
SYNCHRONOUS = ("NORMAL", "FULL")

#: The task log is the store's real path with this added (``evasync.db-tasklog``).
TASK_LOG_SUFFIX = "-tasklog"
#: Seconds after a task committed on its own during which the next ones are logged; a running
#: reactor then moves them into the database (a store made without a clock moves them only when
#: something needs them there, and the next task after that is committed on its own again).
FLUSH_AFTER = 0.1
#: Rows the log holds at most: the add that logs this many moves them at once.
FLUSH_ROWS = 4096
#: The task log's first line, with its generation.
_LOG_HEADER = "evasync task log %d\n"

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
    # version 4: the task log's generation (an older evasync, which would not replay the log,
    # refuses the store instead of missing the tasks logged in it)
    """
    INSERT INTO meta VALUES ('task_log', 0);
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


def _flush_at_exit() -> None:
    # A script that ends without closing its runtime leaves its new tasks in the database too
    # (they would come back from the task log at the next start all the same).
    for store in list(_LOCKED):
        if store._pending and not store._forked:
            try:
                store.flush()
            except StoreError:
                pass  # the task log keeps them


atexit.register(_flush_at_exit)


_crc32 = zlib.crc32
_write = os.write
_SQLITE_INT = range(-(1 << 63), 1 << 63)
_HEADER_WORDS = _LOG_HEADER.split("%d")[0].encode("ascii")


def _sync_directory(path: str) -> None:
    """fsync a directory: the names made in it are on disk once this returns."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_log(data: bytes, generation: int) -> tuple[list[tuple[Any, ...]], str]:
    """The rows a task log holds that are not in the database yet (its generation is the
    database's), and what is damaged in it ("" if nothing)."""
    header, newline, body = data.partition(b"\n")
    if not newline:
        return [], ""  # empty, or its header torn (the process died starting it over)
    number = header[len(_HEADER_WORDS):]
    # (A generation is an SQLite integer: 19 digits at most, and never more than the 4300 that
    # int() takes, lest a forged header raise out of the store's opening.)
    if not header.startswith(_HEADER_WORDS) or not number.isdigit() or len(number) > 19:
        return [], "its first line is not a task log's"
    if int(number) < generation:
        return [], ""  # its rows were moved into the database already
    if int(number) > generation:
        return [], (f"it is of generation {int(number)}, newer than the database's "
                    f"{generation}: was the database restored from an older copy?")
    lines = body.split(b"\n")
    lines.pop()  # after the last line break: empty, or a line torn before delay() returned
    rows, bad = [], 0
    for line in lines:
        row = _parse_line(line)
        if row is None:
            bad += 1
        else:
            rows.append(row)
    return rows, f"{bad} damaged line(s)" if bad else ""


def _parse_line(line: bytes) -> tuple[Any, ...] | None:
    """A task row from a line of the task log, or None if the line is damaged."""
    crc, tab, row = line.partition(b"\t")
    fields = row.split(b"\t")
    if not tab or len(crc) != 8 or len(fields) != 6:
        return None
    try:
        if int(crc, 16) != _crc32(row):
            return None
        task_id, due = int(fields[0]), float(fields[1])
        texts = tuple(field.decode("utf-8") for field in fields[2:])
    except ValueError:  # UnicodeDecodeError too
        return None
    if task_id not in _SQLITE_INT or due != due:  # NaN: SQLite stores NULL, refused
        return None
    return (task_id, due, *texts)


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
    """One SQLite file. Opened (and locked) on first use; every write is committed at once, but
    for new persistent tasks that follow another closely, which are durable in the task log
    beside the file until :meth:`flush` moves them in.

    Args:
        path: The file; default :func:`default_path`.
        synchronous: ``"NORMAL"`` (default, or ``$EVASYNC_SYNCHRONOUS``) or ``"FULL"``: see the
            module's notes on durability.
        clock: Schedules the move of logged tasks into the database (:meth:`flush`) within
            :data:`FLUSH_AFTER` seconds; a runtime passes the real reactor. Without one they are
            moved only when something needs them there.

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
                 synchronous: str | None = None, clock: IReactorTime | None = None) -> None:
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
        self._clock = clock
        # The task log: its descriptor (None until the store is open), generation, size, and
        # the rows logged but not yet moved into the database (add_task()'s fast path needs
        # _log_ready: the log is open, whole, and belongs to this process).
        self._log_fd: int | None = None
        self._log_generation = 0
        self._log_size = 0
        self._log_ready = False
        self._pending: list[tuple[Any, ...]] = []
        self._flush_call: Any = None
        # True while no task was added since the last move: the next one is committed on its
        # own (see add_task()).
        self._quiet = True
        # Set in a forked child (by _forget_lock_in_child): the store is its parent's.
        self._forked = False

    @property
    def real_path(self) -> str:
        """The store file's absolute path with symlinks resolved."""
        return os.path.realpath(self.path)

    @property
    def lock_path(self) -> str:
        """The lock file beside the store (``<real path>.lock``)."""
        return self.real_path + ".lock"

    @property
    def task_log_path(self) -> str:
        """The task log beside the store, ``<real path>-tasklog``, which holds new persistent
        tasks until :meth:`flush` moves them into the database."""
        return self.real_path + TASK_LOG_SUFFIX

    # -- opening ---------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open ``sqlite3.Connection``, in autocommit mode.

        The first use opens the file: it takes the lock, creates the file with its schema if
        it is missing, checks it and upgrades an older schema. Reading through it is safe;
        writing bypasses every check evasync makes on what the store holds. A transaction
        begun on it (``BEGIN``) must be committed or rolled back before evasync writes again:
        until then evasync's writes (a ``db`` attribute, an object) are refused with
        StoreError, since they would be committed only with that transaction; new persistent
        tasks are logged, and moved into the database once it has ended.

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
                self._open_log()
            except BaseException:
                self._close_log()
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
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
        if self._forked:
            raise self._forked_refusal(what)
        conn = self.conn
        if conn.in_transaction:
            raise self._stray(what)
        return conn

    def _forked_refusal(self, what: str) -> StoreError:
        return StoreError(f"evasync store {self.real_path!r}: {what} refused: this process was "
                          "forked from the one that owns the store")

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
        # parent (an explicit unlock would take them away from the parent too). The same for the
        # task log: the parent moves the rows it logged. _forked makes every write of the
        # child's a StoreError (adds included).
        fds, self._lock_fds = self._lock_fds, ()
        if self._log_fd is not None:
            fds += (self._log_fd,)
        self._log_fd, self._log_ready, self._pending, self._flush_call = None, False, [], None
        self._quiet, self._forked = True, True
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
        """Move the logged tasks into the database, close the files and release the lock; the
        store refuses to be used afterwards (a reload makes a new one). If the move fails, the
        task log keeps the tasks and the next opening of the store moves them."""
        try:
            if self._pending and not self._forked:
                try:
                    self.flush()
                except StoreError:
                    log.failure("closing the store: moving the logged tasks into it failed; "
                                "the task log keeps them for the next start",
                                level=LogLevel.error)
        finally:
            self._closed = True
            try:
                self._task_cursor = None
                self._close_log()
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                self._unlock()

    # -- the task log ----------------------------------------------------------------------

    def _open_log(self) -> None:
        """Open the task log (owner-only, made if missing), move what an earlier process logged
        and did not move into the database, and start the log over."""
        path = self.task_log_path
        try:  # never through a symlink (its target would be truncated), nor a FIFO (a hang)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                         | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise self._fail(f"has a task log {path!r} that cannot be read and written "
                             f"({exc.strerror}); if it is a symbolic link, remove it") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise self._fail(f"has a task log {path!r} that is not a plain file of this "
                                 "user; remove it")
            os.set_blocking(fd, True)
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
            if self.synchronous == "FULL":
                _sync_directory(os.path.dirname(path))  # the log's own entry survives a power cut
        except OSError as exc:
            os.close(fd)
            raise self._fail(f"has a task log {path!r} that cannot be read and written "
                             f"({exc.strerror})") from None
        except BaseException:
            os.close(fd)
            raise
        self._log_fd = fd
        self._log_generation = generation = self._stored_generation()
        rows, damaged = _parse_log(data, generation)
        # A row whose id the database has already cannot be the log's own (ids are never
        # handed out twice): the log is damaged.
        # Nor can a row whose id was never handed out (outside the reserved blocks): a forged
        # one, which would take the id of a task added later and have that task dropped.
        fresh, seen = [], set()
        handed_out = range(ID_BLOCK, self.next_id_block() * ID_BLOCK) if rows else range(0)
        for row in rows:
            if row[0] not in handed_out:
                damaged = damaged or "a row with an id never handed out"
            elif row[0] in seen or self._conn.execute(  # type: ignore[union-attr]
                    "SELECT 1 FROM tasks WHERE id=? UNION ALL SELECT 1 FROM quarantine WHERE "
                    "id=?", (row[0], row[0])).fetchone():
                damaged = damaged or "a row with an id the database has already"
            else:
                seen.add(row[0])
                fresh.append(row)
        rows = fresh
        if damaged:
            kept = self._keep_aside(data, damaged)
            log.error("evasync store {path!r}: its task log is damaged ({why}); the rows that "
                      "could be read were restored, and the whole log is kept as {kept!r}",
                      path=self.real_path, why=damaged, kept=kept)
        self._pending = rows
        if rows:
            self.flush()  # restarts the log
        else:
            self._restart_log()
            if not self._log_ready:
                raise self._fail(f"has a task log {path!r} that cannot be written")

    def _keep_aside(self, data: bytes, damaged: str) -> str:
        """Copy a damaged task log to a new file beside it; returns the copy's path."""
        stem = f"{self.task_log_path}.damaged-{int(time.time())}"
        why = "a thousand copies are there already"
        for number in range(1000):
            kept = stem if number == 0 else f"{stem}-{number}"
            try:
                fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                why = exc.strerror
                break
            try:
                with open(fd, "wb") as copy:
                    copy.write(data)
            except OSError as exc:
                why = exc.strerror
                break
            return kept
        raise self._fail(f"has a damaged task log {self.task_log_path!r} ({damaged}) that "
                         f"could not be kept aside ({why})")

    def _stored_generation(self) -> int:
        conn = self._conn
        assert conn is not None
        row = conn.execute("SELECT value FROM meta WHERE name='task_log'").fetchone()
        if row is None or type(row[0]) is not int or row[0] < 0:
            raise self._fail("has a damaged task log generation in its meta table "
                             f"({row[0] if row else 'missing'!r})")
        return row[0]

    def _close_log(self) -> None:
        fd, self._log_fd, self._log_ready = self._log_fd, None, False
        self._cancel_flush()
        if fd is not None:
            os.close(fd)

    def _restart_log(self) -> None:
        """Empty the log and write its header (the current generation): ready for adds. Leaves
        the log not ready if that fails (the next add tries again, and refuses if it fails)."""
        self._log_ready = False
        fd = self._log_fd
        if fd is None:
            return
        header = (_LOG_HEADER % self._log_generation).encode("ascii")
        try:
            os.ftruncate(fd, 0)
            if os.write(fd, header) != len(header):
                raise OSError(errno.ENOSPC, "short write")
            if self.synchronous == "FULL":
                os.fdatasync(fd)
        except OSError as exc:
            log.warn("evasync store {path!r}: starting its task log over failed ({why}); the "
                     "next persistent delay tries again", path=self.real_path, why=exc.strerror)
            return
        self._log_size = len(header)
        self._log_ready = True

    def _ready_log(self) -> None:
        """Make the log ready for an add, or raise StoreError (the add is refused)."""
        if self._log_fd is None:
            self.conn  # opens the store and its log, or raises (closed, say)
        if not self._log_ready:
            self.flush()           # what the log holds goes into the database first
            self._restart_log()
            if not self._log_ready:
                raise StoreError(f"evasync store {self.real_path!r}: storing a task failed: "
                                 f"its task log {self.task_log_path!r} cannot be written")

    @_sqlite_errors("moving logged tasks into the database")
    def flush(self) -> None:
        """Move the tasks logged since the last move into the database's ``tasks`` table, in one
        transaction, and start the task log over; nothing happens if there are none.

        evasync calls it itself: :data:`FLUSH_AFTER` seconds after the task that opened the
        log's batch on a running reactor, before anything reads or changes the stored tasks,
        every :data:`FLUSH_ROWS` tasks, and at close. Call it before reading the ``tasks``
        table through :attr:`conn` or another connection to see the latest tasks there.

        Raises:
            StoreError: SQLite failed; the rows stay in the log (nothing is lost) and the next
                flush, or the next opening of the store, moves them.
        """
        rows = self._pending
        if not rows:
            self._quiet = True
            return
        generation = self._log_generation + 1
        with self._transaction("moving logged tasks into the database") as conn:
            conn.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.execute("UPDATE meta SET value=? WHERE name='task_log'", (generation,))
        # Committed: the log's rows are in the database, and the log (of the old generation)
        # is never replayed again, even if starting it over fails now. (A scheduled move is
        # kept until then: after a failure, it is the one that tries again.)
        self._log_generation = generation
        self._pending = []
        self._quiet = True
        self._cancel_flush()
        self._restart_log()

    def _flush_soon(self, seconds: float) -> None:
        """Have the clock (if any) call :meth:`flush` in ``seconds``, unless it will already."""
        if self._flush_call is None and self._clock is not None:
            self._flush_call = self._clock.callLater(seconds, self._flush_later)

    def _cancel_flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    def _flush_later(self) -> None:
        self._flush_call = None
        try:
            self.flush()
        except StoreError:
            log.failure("moving logged tasks into the store failed; they stay in its task log "
                        "and are moved later", level=LogLevel.error)
            if self._pending and not self._closed:
                self._flush_soon(1.0)

    def _log_failed(self, what: str, exc: OSError) -> StoreError:
        # The line may be half in the log: cut it off, or else make the next add start the
        # log over (after moving what it holds) so nothing is appended behind a torn line.
        try:
            os.ftruncate(self._log_fd, self._log_size)  # type: ignore[arg-type]
        except OSError:
            self._log_ready = False
        return StoreError(f"evasync store {self.real_path!r}: {what} failed: writing its task "
                          f"log {self.task_log_path!r} failed: {exc.strerror or exc}")

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
        """Store a new task's row: durable when this returns. ``callback``, ``args`` and
        ``kwargs`` are the codec's JSON texts, which hold no tab or line break.

        The first task since the last :meth:`flush` is committed on its own, so a game that
        adds a task now and then never pays for a move as well; the ones that follow it within
        :data:`FLUSH_AFTER` seconds are logged, and moved together.
        """
        if self._quiet and self._insert_task((task_id, due, state, callback, args, kwargs)):
            self._quiet = False
            self._flush_soon(FLUSH_AFTER)
            return
        if not self._log_ready:
            self._ready_log()
        # One line: its CRC-32, then the row's fields, tab-separated (a persistent delay()
        # pays for every step here: no JSON of the row, one write).
        line = f"{task_id}\t{due!r}\t{state}\t{callback}\t{args}\t{kwargs}".encode()
        record = b"%08x\t%s\n" % (_crc32(line), line)
        try:
            written = _write(self._log_fd, record)
            if written != len(record):
                raise OSError(errno.ENOSPC, "No space left on device (short write)")
            if self.synchronous == "FULL":
                os.fdatasync(self._log_fd)  # type: ignore[arg-type]
        except OSError as exc:
            raise self._log_failed("storing a task", exc) from exc
        self._log_size += written
        pending = self._pending
        pending.append((task_id, due, state, callback, args, kwargs))
        if len(pending) == 1:
            self._flush_soon(FLUSH_AFTER)  # scheduled already, unless no add committed first
        if len(pending) >= FLUSH_ROWS:
            try:
                self.flush()
            except StoreError:  # the task is logged: this add succeeded all the same
                log.failure("moving logged tasks into the store failed; they stay in its "
                            "task log and are moved later", level=LogLevel.error)

    def _insert_task(self, row: tuple[Any, ...]) -> bool:
        # add_task()'s own commit: an INSERT in autocommit mode, through a kept cursor. False,
        # having done nothing, while a transaction begun on conn is open: the row would be
        # committed only with it, so it is logged instead, and moved once the transaction ends.
        if self._forked:
            raise self._forked_refusal("storing a task")
        try:
            cursor = self._task_cursor
            if cursor is None:
                cursor = self._task_cursor = self.conn.cursor()
            if self._conn.in_transaction:  # type: ignore[union-attr]
                return False
            cursor.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)", row)
        except sqlite3.Error as exc:
            raise self._error("storing a task", exc) from exc
        return True

    @_sqlite_errors("updating a task")
    def set_task_state(self, task_id: int, state: str, due: float) -> None:
        if self._pending:
            self.flush()
        conn = self._writer("updating a task")
        conn.execute("UPDATE tasks SET state=?, due=? WHERE id=?", (state, due, task_id))

    @_sqlite_errors("deleting tasks")
    def delete_tasks(self, task_ids: Iterable[int]) -> None:
        if self._pending:
            self.flush()
        with self._transaction("deleting tasks") as conn:
            conn.executemany("DELETE FROM tasks WHERE id=?", ((i,) for i in task_ids))

    @_sqlite_errors("deleting every task")
    def delete_all_tasks(self) -> None:
        if self._pending:
            self.flush()
        conn = self._writer("deleting every task")
        conn.execute("DELETE FROM tasks")

    @_sqlite_errors("reading tasks")
    def tasks(self) -> list[tuple[Any, ...]]:
        """All stored tasks as (id, due, state, callback, args, kwargs), soonest first.

        Rows are returned as stored: a damaged row may hold values of any type.
        """
        if self._pending:
            self.flush()
        return self.conn.execute(
            "SELECT id, due, state, callback, args, kwargs FROM tasks ORDER BY due, id").fetchall()

    @_sqlite_errors("quarantining tasks")
    def quarantine_tasks(self, reasons: dict[int, str], when: float) -> None:
        """Move the task rows ``reasons`` names to the quarantine table, each with its reason."""
        if self._pending:
            self.flush()
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
