"""The runtime: the one place that decides which clock and which store are in use.

Everything else receives them from here. Module-level functions (``evasync.delay`` and friends)
act on the *current* runtime, which is created on first use with the real reactor and the store
named by ``$EVASYNC_DB``. Tests install their own (see :mod:`evasync.testing`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ._timers import Timers
from .driver import Driver
from .objects import ObjectRegistry
from ._codec import Trust
from .store import Store, default_path
from .tasks import TaskHandler

_log = Logger()


def _real_reactor() -> Any:
    from twisted.internet import reactor  # the only import of the global reactor in evasync

    return reactor


class Runtime:
    """Owns a clock, a store and everything scheduled or loaded from it.

    Args:
        clock: What schedules calls: the real reactor (default) or a
            ``twisted.internet.task.Clock`` for virtual time.
        db_path: The SQLite store file; default ``$EVASYNC_DB`` or ``evasync.db``. One store
            file has one runtime at a time (an OS lock; see :mod:`evasync.store`).
        trusted: More top-level packages whose functions, typeclasses and command sets the store
            may name, besides ``evasync``, ``howtos``, ``$EVASYNC_TRUSTED`` and your game's own
            folder (see :class:`~evasync.store.Trust`).
        synchronous: The store's durability, ``"NORMAL"`` (default) or ``"FULL"``.

    Attributes:
        store: The :class:`~evasync.store.Store`.
        tasks: The :class:`~evasync.TaskHandler`.
        driver: The driver of paused and asking generators and coroutines.
        objects: The registry of stored game objects.
        trust: The :class:`~evasync.store.Trust` that decides which names the store may hold.
    """

    def __init__(self, clock: IReactorTime | None = None,
                 db_path: str | os.PathLike | None = None, trusted: Iterable[str] = (),
                 synchronous: str | None = None) -> None:
        self._clock = clock if clock is not None else _real_reactor()
        # Absolute now: a reload after the process changed directory opens the same store.
        self._db_path = os.path.abspath(os.fspath(db_path) if db_path is not None
                                        else default_path())
        self._synchronous = synchronous
        self.trust = Trust(trusted)
        #: Called with no arguments on every reload and close, before the store closes.
        self.stop_hooks: list[Callable[[], None]] = []
        #: Per-runtime helpers made on first use (run_async's pools), dropped at reload/close.
        self.services: dict[str, Any] = {}
        self._start()

    @property
    def clock(self) -> IReactorTime:
        """The ``IReactorTime`` provider that delays, pauses and question timeouts run on, the
        reactor or a virtual clock.

        Setting it, directly or as ``TASK_HANDLER.clock = Clock()`` (as tests written for
        Evennia do), moves every pending task, pause and question timeout to the new clock,
        each keeping the time it had left (see :attr:`TaskHandler.clock`). From then on
        :func:`evasync.now` reads the new clock, later calls of ``run_async(...,
        executor="reactor")`` are scheduled on it, and a :meth:`reload` keeps it.
        """
        return self._clock

    @clock.setter
    def clock(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.tasks.clock = clock
        self.driver.clock = clock

    @property
    def reactor(self) -> Any:
        """The real reactor (for threads and sockets), whatever clock schedules delays."""
        return _real_reactor()

    def _start(self) -> None:
        self.store = Store(self._db_path, self._synchronous, clock=_real_reactor())
        self.objects = ObjectRegistry(self)
        # One heap of timers for delays and pauses: due together, they run in the order made.
        self._timers = Timers(self._clock)
        self.tasks = TaskHandler(self._clock, self.store, self.objects.get, self.trust,
                                 self._timers)
        self.driver = Driver(self._clock, self._timers)
        self.objects.on_delete.append(self.driver.close_caller)

    def _stop(self) -> None:
        # The driver first: a body waiting on run_async gets CallerGone, not the cancellation
        # of the call that the stop hooks then drop. Every step runs even if one before it
        # raised (a half-stopped runtime would keep the store locked for good); the first
        # error is raised at the end, any later one is logged.
        steps = [self.driver.stop, *self.stop_hooks, self.services.clear, self.tasks.stop,
                 self._timers.stop, self.store.close]
        first: Exception | None = None
        for step in steps:
            try:
                step()
            except Exception as exc:
                if first is None:
                    first = exc
                else:
                    _log.failure("stopping the runtime: {step!r} failed too", step=step)
        if first is not None:
            raise first

    def reload(self) -> int:
        """Simulate a graceful server reload, in place.

        Non-persistent tasks, pauses and ``ndb`` attributes are gone; objects are read again from
        the store (fetch them again with :func:`evasync.get_object`), and the persistent tasks are
        loaded and scheduled. Returns the number of tasks loaded.
        """
        self._stop()
        self._start()
        return self.tasks.load()

    def disconnect(self, obj: Any, session: Any = None) -> int:
        """A connection to ``obj`` closed: detach it, and when ``obj`` has no connection left,
        close the generators waiting on it (their ``finally`` blocks run).

        Args:
            obj: The character whose player left.
            session: The connection that closed; None detaches all of them.

        Returns:
            How many waiting generators were closed.
        """
        if session is None:
            obj.sessions.clear()
        elif session in obj.sessions:
            obj.sessions.remove(session)
        if obj.sessions:
            return 0
        return self.driver.close_caller(obj)

    def close(self) -> None:
        """Stop everything scheduled (persistent tasks stay stored) and close the store.

        Every step runs even if one fails (a ``stop_hooks`` entry that raises, say), so the
        store is always closed and its lock released; the first error is then raised again.
        """
        self._stop()


_current: Runtime | None = None


def get_runtime() -> Runtime:
    """The current runtime; the default one (real reactor, ``$EVASYNC_DB``) is made on first use."""
    global _current
    if _current is None:
        _current = Runtime()
    return _current


def current_runtime() -> Runtime | None:
    """The current runtime, or None if none has been made yet (never creates one)."""
    return _current


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` current (None: a default one is made on next use). Returns the old one."""
    global _current
    previous, _current = _current, runtime
    return previous


@contextlib.contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    """Make ``runtime`` current inside the ``with`` block, then restore the previous one."""
    previous = set_runtime(runtime)
    try:
        yield runtime
    finally:
        set_runtime(previous)


def now() -> float:
    """Seconds on the current runtime's clock: ``time.time()`` on the real reactor, virtual time
    under :class:`~evasync.testing.VirtualRuntime`. Use it for timestamps compared later."""
    return get_runtime().clock.seconds()


class _CurrentTaskHandler:
    """``evasync.TASK_HANDLER``: always the current runtime's :class:`TaskHandler`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(get_runtime().tasks, name)

    def __setattr__(self, name: str, value: Any) -> None:
        runtime = get_runtime()
        if name == "clock":  # the whole runtime's clock, as Evennia's pauses use its delays
            runtime.clock = value
        else:
            setattr(runtime.tasks, name, value)

    def __len__(self) -> int:
        return len(get_runtime().tasks)

    def __repr__(self) -> str:
        return "<TASK_HANDLER of the current evasync runtime>"


TASK_HANDLER: Any = _CurrentTaskHandler()
