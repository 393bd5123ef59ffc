"""``delay`` and the task handler: scheduled calls with handles, optionally stored to survive reloads.

Each task lives in a dict keyed by its id and waits in a heap of timers that shares one call of
the clock (:mod:`evasync._timers`); adding, firing and cancelling cost the same however many tasks
are pending. Persistent tasks are also written to the
store before :meth:`TaskHandler.add` returns and deleted only after their callback ran, so a task
fires at least once even if the process dies; a graceful stop never fires one twice.

The handler behaves like Evennia's: ``unpause()`` of a task whose time has passed runs it inside
the call, a cancelled task is dropped once it is :attr:`~TaskHandler.stale_timeout` seconds past
its time (checked when tasks are added or loaded, or by :meth:`~TaskHandler.clean_stale_tasks`),
and ``clock``, ``clear()``, ``create_delays()``, ``tasks`` and ``to_save`` are there for tests
written against Evennia. Task ids are never reused (Evennia reuses them).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import heapq
import inspect
import math
import types
from numbers import Real
from typing import Any, Callable, Iterator, Mapping

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from . import _codec, _failures
from ._codec import Trust
from ._timers import Timers
from .store import ID_BLOCK, Store

log = Logger(namespace="evasync.tasks")

SCHEDULED, PAUSED, CANCELLED, DONE = "scheduled", "paused", "cancelled", "done"
_STORED_STATES = (SCHEDULED, PAUSED, CANCELLED)

#: How many overdue tasks fire per reactor turn after a load, so players are not frozen by a
#: backlog that came due while the server was down.
OVERDUE_CHUNK = 500

#: Seconds a cancelled task is kept past its time before it is dropped (Evennia's default).
STALE_TIMEOUT = 60

#: Quarantined rows named one by one in the log at a load; the rest are counted.
_LOGGED_ROWS = 20

_NO_KWARGS: Mapping[str, Any] = types.MappingProxyType({})
_NO_KWARGS_TEXT = '{"d":[]}'  # what _codec.dumps({}) gives, written once


_INF = math.inf
_HUGE = 2 ** 1000  # ints below convert to a finite float (computed once: Python folds no such constant)


def check_timedelay(timedelay: Any) -> float:
    """Return ``timedelay`` as a float; TypeError/ValueError if it is not a finite number >= 0."""
    kind = type(timedelay)
    if kind is float:
        if 0 <= timedelay < math.inf:
            return timedelay
    elif kind is int and 0 <= timedelay < _HUGE:
        return float(timedelay)
    if kind is not int and kind is not float:
        if isinstance(timedelay, bool) or not isinstance(timedelay, Real):
            raise TypeError(f"timedelay must be a number of seconds, not {timedelay!r} "
                            f"(type {kind.__name__})")
    try:
        seconds = float(timedelay)
    except OverflowError:
        seconds = math.inf
    if not seconds >= 0 or seconds == math.inf:
        raise ValueError(f"timedelay must be a finite number of seconds >= 0, not {timedelay!r}")
    return seconds


def _name(callback: Callable) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)


def _full_name(callback: Callable) -> str:
    module = getattr(callback, "__module__", None)
    return f"{module}.{_name(callback)}" if module else _name(callback)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off garbage collection: a load makes many objects and no cycles, so the collector
    would only re-scan them again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Task:
    """The handle :func:`~evasync.delay` returns. Every method is safe on a finished task.

    A handle only ever acts on its own task: ids are never reused, so a handle kept after its task
    ran or was removed finds nothing and its methods return False (or None).

    Attributes:
        id: The task's id, unique for the lifetime of the store (never reused).
        callback: What the task calls; after a reload, the function (or the stored object's
            method) found again by the name it was stored under.
        args: The positional arguments, a tuple.
        kwargs: The keyword arguments, a mapping.
        persistent: True if the task is kept in the store (``delay(..., persistent=True)``).
        due: When the task fires, in seconds on the runtime's clock (the scale of
            :func:`evasync.now`). Pausing keeps it: a task unpaused after its time runs at once.
        state: ``"scheduled"``, ``"paused"``, ``"cancelled"``, or ``"done"`` once it has run or
            was removed.
    """

    __slots__ = ("id", "_handler", "callback", "args", "kwargs", "persistent", "due", "state",
                 "called", "_call", "_deferred")

    def __init__(self, handler: "TaskHandler", task_id: int, callback: Callable, args: tuple,
                 kwargs: Mapping[str, Any], persistent: bool, due: float,
                 state: str = SCHEDULED) -> None:
        self.id = task_id
        self._handler = handler
        self.callback = callback
        self.args = args
        self.kwargs = kwargs
        self.persistent = persistent
        self.due = due
        self.state = state
        #: True once the callback has run because the task fired (or by ``do_task()``); not set
        #: by ``call()`` or ``cancel()``.
        self.called = False
        self._call: Any = None
        self._deferred: defer.Deferred | None = None

    def __repr__(self) -> str:
        kind = "persistent " if self.persistent else ""
        return f"<{kind}Task {self.id} {_name(self.callback)} {self.state}>"

    def get_id(self) -> int:
        """The task's id, unique for the lifetime of the store (never reused)."""
        return self.id

    def active(self) -> bool:
        """True while the task is pending: scheduled or paused, neither run, cancelled nor removed."""
        return self._handler.active(self.id)

    def exists(self) -> bool:
        """True while the task handler still holds the task (pending or cancelled, not yet removed)."""
        return self._handler.exists(self.id)

    def cancel(self) -> bool:
        """Stop the task from firing but keep it (``do_task()`` can still run it) until it is
        stale: :attr:`TaskHandler.stale_timeout` seconds past its time.

        Returns:
            True if a pending task was stopped; False if it had already run, was cancelled or removed.
        """
        return self._handler.cancel(self.id)

    def remove(self) -> bool:
        """Drop the task (and its stored copy). True if it existed, False otherwise."""
        return self._handler.remove(self.id)

    def do_task(self) -> Any:
        """Run the callback now and remove the task. Returns the callback's result (False if gone)."""
        return self._handler.do_task(self.id)

    def call(self) -> Any:
        """Run the callback now and leave the task as it was. Returns its result (False if gone)."""
        return self._handler.call_task(self.id)

    def pause(self) -> bool:
        """Hold a scheduled task. True if it was scheduled and is now paused."""
        return self._handler.pause(self.id)

    def unpause(self) -> bool:
        """Release a paused task: if its time has passed it runs now, inside this call; otherwise
        it fires at its time. True if it was paused."""
        return self._handler.unpause(self.id)

    @property
    def paused(self) -> bool:
        """True while the task is paused."""
        return self.state == PAUSED and self._handler.exists(self.id)

    def get_deferred(self) -> defer.Deferred | None:
        """A Deferred that fires with the callback's result when the task runs.

        It errbacks with the callback's failure, or with ``CancelledError`` if the task is removed
        before running. None if the task no longer exists.
        """
        return self._handler.get_deferred(self.id)


class TaskHandler:
    """Holds a runtime's tasks. ``evasync.TASK_HANDLER`` is the current runtime's handler.

    Args:
        clock: Schedules the tasks (the reactor, or a ``task.Clock`` in tests).
        store: Where persistent tasks are kept.
        lookup: ``lookup(object_id)`` gives a stored game object back (LookupError if none).
        trust: Which modules stored callbacks may come from.

    Attributes:
        stale_timeout: Seconds a cancelled task is kept past its time (default 60, as in
            Evennia). Each :meth:`add` and :meth:`load` then drops the cancelled tasks that are
            older, with their stored copies (see :meth:`clean_stale_tasks`); 0 (or less) turns
            that automatic clean-up off, and :meth:`clean_stale_tasks` then drops every
            cancelled task whose time has passed.
    """

    def __init__(self, clock: IReactorTime, store: Store, lookup: Callable[[int], Any],
                 trust: Trust | None = None, timers: Timers | None = None) -> None:
        self._clock = clock
        # Shared with the driver by the runtime, so a delay and a pause due at the same time
        # run in the order they were made.
        self._timers = timers if timers is not None else Timers(clock)
        self._owns_timers = timers is None
        self._fire_task = self._fire  # one bound method for every task (a new one is 64 bytes)
        self._store = store
        self._lookup = lookup
        self._trust = trust if trust is not None else _codec.Trust()
        self._tasks: dict[int, Task] = {}
        self._next_id = 0
        self._end_id = 0
        self._stopped = False
        #: Persistent tasks whose callback ran but whose stored row is not deleted yet.
        self._running: set[int] = set()
        #: (due, id) of cancelled tasks, soonest first: what clean_stale_tasks() looks at.
        self._cancelled: list[tuple[float, int]] = []
        self._warned: set[str] = set()
        self.stale_timeout: float = STALE_TIMEOUT
        #: Evennia's testing hook: a ``datetime`` (or seconds) used as "now" by the stale check.
        self._now: Any = None

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def clock(self) -> IReactorTime:
        """The clock tasks are scheduled on (an ``IReactorTime``).

        Setting it, as Evennia's tests do with a ``task.Clock``, moves every task held to the
        new clock, each keeping the time it had left: its :attr:`Task.due` is shifted by the
        difference between the two clocks' times, in the store too for a persistent task. The
        runtime's pauses and question timeouts share the handler's timers and move with them.
        ``TASK_HANDLER.clock = clock`` sets the whole runtime's clock (:attr:`Runtime.clock`),
        which is what :func:`evasync.now` and a reload then use as well.
        """
        return self._clock

    @clock.setter
    def clock(self, clock: IReactorTime) -> None:
        offset = clock.seconds() - self._clock.seconds()
        for task in self._tasks.values():
            task.due += offset
            if task.persistent:
                self._store.set_task_state(task.id, task.state, task.due)
        # The same shift for every entry keeps the heap a heap.
        self._cancelled = [(due + offset, task_id) for due, task_id in self._cancelled]
        if self._timers.clock is not clock:
            self._timers.move_to(clock)
        self._clock = clock

    @property
    def tasks(self) -> Mapping[int, Task]:
        """The tasks held (scheduled, paused or cancelled) by id, in a read-only view of the
        handler's own dict that follows later changes."""
        return types.MappingProxyType(self._tasks)

    @property
    def to_save(self) -> Mapping[int, Task]:
        """The persistent tasks held (scheduled, paused or cancelled) by id, in a new dict at
        each access, which changes nothing when changed (Evennia's name for what is stored)."""
        return {task_id: task for task_id, task in self._tasks.items() if task.persistent}

    # -- adding ----------------------------------------------------------------------------

    def _new_id(self) -> int:
        if self._next_id >= self._end_id:
            self._next_id = self._store.reserve_id_block()
            self._end_id = self._next_id + ID_BLOCK
        task_id = self._next_id
        self._next_id += 1
        return task_id

    def add(self, timedelay: float, callback: Callable, *args: Any, persistent: bool = False,
            **kwargs: Any) -> Task:
        """Schedule ``callback(*args, **kwargs)`` in ``timedelay`` seconds and return its
        :class:`Task`: what :func:`evasync.delay` does, on this handler, with the same arguments
        and errors. It also raises RuntimeError if the handler was stopped (its runtime was
        reloaded or closed). When cancelled tasks are held, it then drops the stale ones (see
        :attr:`stale_timeout`)."""
        return self._add(timedelay, callback, args, kwargs, persistent)

    def _add(self, timedelay: float, callback: Callable, args: tuple, kwargs: dict,
             persistent: bool) -> Task:
        # add() with its arguments packed once: evasync.delay() hands them straight on.
        start = self._clock.seconds()  # the delay counts from the call, store opening included
        # check_timedelay()'s answer for the usual number, without its call (every delay pays).
        kind = type(timedelay)
        if kind is int and 0 <= timedelay < _HUGE or kind is float and 0 <= timedelay < _INF:
            seconds = timedelay
        else:
            seconds = check_timedelay(timedelay)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        if self._stopped:
            raise RuntimeError("this task handler was stopped (the runtime was reloaded or "
                               "closed); use evasync.delay() or the new runtime's handler")
        if persistent:
            callback_text = _codec.callback_text(callback, self._trust)
            args_text = _codec.dumps_arguments(args, callback)
            kwargs_text = _codec.dumps_keywords(kwargs, callback) if kwargs else _NO_KWARGS_TEXT
        task_id = self._next_id
        if task_id < self._end_id:
            self._next_id = task_id + 1
        else:
            task_id = self._new_id()
        due = start + seconds
        task = Task(self, task_id, callback, args, kwargs or _NO_KWARGS, persistent, due)
        if persistent:
            self._store.add_task(task_id, due, SCHEDULED, callback_text, args_text, kwargs_text)
        self._tasks[task_id] = task
        task._call = self._timers.at(due, self._fire_task, task)
        if self._cancelled and self.stale_timeout > 0:
            self._clean_quietly()
        return task

    def _clean_quietly(self) -> None:
        # The new task is in: a failure of this housekeeping must not make delay() raise
        # (a caller that retried would schedule it twice); the next add tries again.
        try:
            self.clean_stale_tasks()
        except Exception:
            log.failure("dropping stale cancelled tasks failed; they are kept for now",
                        level=LogLevel.error)

    def _schedule(self, task: Task) -> None:
        task._call = self._timers.at(task.due, self._fire_task, task)

    # -- running ---------------------------------------------------------------------------

    def _run(self, task: Task) -> None:
        """Run a due task's callback, routing a failure to its Deferred or to the log."""
        task.called = True
        deferred = task._deferred
        try:
            result = task.callback(*task.args, **task.kwargs)
        except Exception:
            failure = Failure()
            if deferred is None:
                log.failure("task {task_id} ({callback}) raised", failure, task_id=task.id,
                            callback=_name(task.callback), level=LogLevel.error)
            else:
                _failures.fail(deferred, failure, log, "task {task_id} ({callback}) raised",
                               task_id=task.id, callback=_name(task.callback))
            return
        if deferred is not None:
            deferred.callback(result)
        elif inspect.isgenerator(result) or inspect.iscoroutine(result):
            self._warn_undriven(task.callback, result)

    def _warn_undriven(self, callback: Callable, result: Any) -> None:
        name = _full_name(callback)
        if inspect.iscoroutine(result):
            result.close()  # our warning replaces Python's "coroutine was never awaited"
        if name in self._warned:
            return
        self._warned.add(name)
        kind = "coroutine" if inspect.iscoroutine(result) else "generator"
        log.warn("delay callback {callback} returned a {kind} that nothing drives, so none of "
                 "its body ran. A delay callback is called once; to pause or ask, decorate the "
                 "function with @interactive (it needs a 'caller' argument) or put the yield in "
                 "a Command's func().", callback=name, kind=kind)

    def _fire(self, task: Task) -> None:
        task._call = None
        del self._tasks[task.id]
        task.state = DONE
        if not task.persistent:
            self._run(task)
            return
        self._running.add(task.id)
        self._run(task)
        self._ran((task.id,))

    def _ran(self, task_ids: tuple[int, ...] | list[int]) -> None:
        """Delete the stored copies of persistent tasks whose callbacks have run."""
        if self._stopped:
            return  # stop() deleted them, before its store closed (a callback reloaded)
        self._running.difference_update(task_ids)
        try:
            self._store.delete_tasks(task_ids)
        except Exception:
            # The task ran: stop() tries again (a graceful reload must not run it twice); if
            # that fails too, it runs once more at the next start (at least once). The error
            # must not escape into the reactor's timed call.
            self._running.update(task_ids)
            log.failure("could not delete stored task(s) {task_ids} after they ran",
                        task_ids=list(task_ids), level=LogLevel.error)

    def _fire_overdue(self, tasks: list[Task], start: int = 0) -> None:
        batch = tasks[start:start + OVERDUE_CHUNK]
        ran = []
        for task in batch:
            if self._tasks.get(task.id) is task and task.state == SCHEDULED and task._call is None:
                del self._tasks[task.id]
                task.state = DONE
                self._running.add(task.id)
                self._run(task)
                ran.append(task.id)
        if ran:
            self._ran(ran)
        if start + OVERDUE_CHUNK < len(tasks) and not self._stopped:
            self._clock.callLater(0, self._fire_overdue, tasks, start + OVERDUE_CHUNK)

    # -- handle operations, by id ----------------------------------------------------------

    def get(self, task_id: int) -> Task | None:
        """The handle of a pending or cancelled task, or None if there is no such task."""
        return self._tasks.get(task_id)

    def exists(self, task_id: int) -> bool:
        """True if the handler holds task ``task_id``."""
        return task_id in self._tasks

    def active(self, task_id: int) -> bool:
        """True if task ``task_id`` is scheduled or paused (not run, cancelled or removed)."""
        task = self._tasks.get(task_id)
        return task is not None and task.state in (SCHEDULED, PAUSED)

    def _set_state(self, task: Task, state: str) -> None:
        if task.persistent:
            self._store.set_task_state(task.id, state, task.due)
        task.state = state

    @staticmethod
    def _stop_call(task: Task) -> None:
        if task._call is not None:
            Timers.cancel(task._call)
            task._call = None

    def cancel(self, task_id: int) -> bool:
        """Stop task ``task_id`` from firing, keeping it until it is stale. True if a pending
        task was stopped."""
        task = self._tasks.get(task_id)
        if task is None or task.state not in (SCHEDULED, PAUSED):
            return False
        self._set_state(task, CANCELLED)
        self._stop_call(task)
        heapq.heappush(self._cancelled, (task.due, task.id))
        return True

    def _unschedule(self, task: Task) -> None:
        self._stop_call(task)
        del self._tasks[task.id]
        task.state = DONE

    def remove(self, task_id: int) -> bool:
        """Drop task ``task_id`` and its stored copy. True if it existed."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        if task.persistent:
            self._store.delete_tasks((task.id,))
        self._unschedule(task)
        if task._deferred is not None:
            _failures.cancel(task._deferred)
        return True

    def do_task(self, task_id: int) -> Any:
        """Run task ``task_id`` now and remove it; its result, or False if there is no such task.

        An exception from the callback propagates to the caller (and to the task's Deferred).
        """
        task = self._tasks.get(task_id)
        if task is None:
            return False
        # Unscheduled at once, but its stored copy goes only once the callback has run: a
        # crash meanwhile runs it again at the next start rather than never (at least once).
        self._unschedule(task)
        task.called = True
        if task.persistent:
            self._running.add(task_id)
        try:
            result = task.callback(*task.args, **task.kwargs)
        except Exception:
            if task._deferred is not None:
                _failures.fail(task._deferred, Failure(), None)  # the caller gets it raised
            raise
        else:
            if task._deferred is not None:
                task._deferred.callback(result)
            return result
        finally:
            if task.persistent:
                self._ran((task_id,))

    def call_task(self, task_id: int) -> Any:
        """Run task ``task_id``'s callback now, leaving the task as it was (its ``called`` too,
        as in Evennia); False if there is no such task."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        return task.callback(*task.args, **task.kwargs)

    def pause(self, task_id: int) -> bool:
        """Hold scheduled task ``task_id``. True if it was scheduled and is now paused."""
        task = self._tasks.get(task_id)
        if task is None or task.state != SCHEDULED:
            return False
        self._set_state(task, PAUSED)
        self._stop_call(task)
        return True

    def unpause(self, task_id: int) -> bool:
        """Release paused task ``task_id``: if its time has passed it runs now, inside this
        call (as in Evennia); otherwise it fires at its time. True if it was paused."""
        task = self._tasks.get(task_id)
        if task is None or task.state != PAUSED:
            return False
        self._set_state(task, SCHEDULED)
        if task.due <= self._clock.seconds():
            self._fire(task)
        else:
            self._schedule(task)
        return True

    def get_deferred(self, task_id: int) -> defer.Deferred | None:
        """The Deferred of task ``task_id`` (see :meth:`Task.get_deferred`), or None."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task._deferred is None:
            # Cancelling it cancels the task, as cancelling Evennia's (deferLater's) does.
            task._deferred = defer.Deferred(canceller=lambda _: self.cancel(task_id))
        return task._deferred

    def all(self) -> list[Task]:
        """Handles of every task the handler holds, in id order."""
        return [self._tasks[i] for i in sorted(self._tasks)]

    # -- Evennia's housekeeping ------------------------------------------------------------

    def _stale_now(self) -> float:
        now = self._now
        if isinstance(now, datetime.datetime):
            return now.timestamp()
        if isinstance(now, (int, float)) and not isinstance(now, bool) and now:
            return float(now)
        return self._clock.seconds()

    def clean_stale_tasks(self) -> int:
        """Drop the cancelled tasks that are more than :attr:`stale_timeout` seconds past their
        time on the handler's clock, with their stored copies; the Deferred of each
        (:meth:`Task.get_deferred`) fails with ``CancelledError``. Scheduled and paused tasks
        are never touched. Returns how many were dropped.

        Raises:
            StoreError: The stored copies could not be deleted; nothing was dropped (the next
                clean-up tries again).
        """
        cutoff = self._stale_now() - max(0.0, self.stale_timeout)
        stale = []
        while self._cancelled and self._cancelled[0][0] < cutoff:
            _, task_id = heapq.heappop(self._cancelled)
            task = self._tasks.get(task_id)
            if task is not None and task.state == CANCELLED:
                stale.append(task)
        stored = [task.id for task in stale if task.persistent]
        if stored:
            try:
                self._store.delete_tasks(stored)
            except Exception:
                for task in stale:  # still held and stored: the next clean-up finds them
                    heapq.heappush(self._cancelled, (task.due, task.id))
                raise
        for task in stale:
            self._unschedule(task)
            if task._deferred is not None:
                _failures.cancel(task._deferred)
        return len(stale)

    def clear(self, save: bool = True, cancel: bool = True) -> bool:
        """Drop every task held (Evennia's ``clear``): none of them fires any more, and the
        Deferred of each (:meth:`Task.get_deferred`) fails with ``CancelledError``.

        Args:
            save: Also delete every task row of the store, held or not; False keeps the store
                as it is (so a :meth:`load` brings the persistent ones back, as a restart
                would).
            cancel: Accepted for Evennia's signature; cleared tasks never fire either way.

        Returns:
            True.
        """
        tasks = list(self._tasks.values())
        if save:
            self._store.delete_all_tasks()
        for task in tasks:
            self._unschedule(task)
            if task._deferred is not None:
                _failures.cancel(task._deferred)
        self._cancelled.clear()
        self._running.clear()
        return True

    def create_delays(self) -> int:
        """Schedule every held, scheduled task that has no timer (Evennia's second start-up step;
        :meth:`load` already schedules what it loads). Returns how many were scheduled."""
        waiting = [task for task in self._tasks.values()
                   if task.state == SCHEDULED and task._call is None]
        for task in waiting:
            self._schedule(task)
        return len(waiting)

    # -- persistence -----------------------------------------------------------------------

    def _restore(self, row: tuple, decoder: _codec.Decoder, callbacks: dict[str, Any],
                 failed_imports: dict[str, str]) -> Task:
        """The task stored in ``row``, or an exception saying why it cannot be restored."""
        task_id, due, state, callback_text, args_text, kwargs_text = row
        if type(due) not in (int, float) or not math.isfinite(due):
            raise ValueError(f"its time is not a number of seconds: {due!r}")
        if state not in _STORED_STATES:
            raise ValueError(f"its state is not one of {', '.join(_STORED_STATES)}: {state!r}")
        if not isinstance(callback_text, str):
            raise ValueError(f"its callback is not text: {callback_text!r}")
        callback = callbacks.get(callback_text)
        if callback is None:
            callback = _codec.decode_callback(callback_text, self._lookup, self._trust,
                                              failed_imports)
            if '"path"' in callback_text:  # a function, the same for every row naming it
                callbacks[callback_text] = callback
        args = decoder.loads(args_text)
        kwargs = decoder.loads(kwargs_text)
        if not isinstance(args, (list, tuple)):
            raise ValueError(f"its arguments are not a list: {args!r:.60}")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ValueError(f"its keyword arguments are not a dict of names: {kwargs!r:.60}")
        return Task(self, task_id, callback, tuple(args), kwargs or _NO_KWARGS, True, float(due),
                    state)

    def load(self) -> int:
        """Restore and schedule the persistent tasks in the store; returns how many were restored.

        Tasks already held (added in this process, or restored by an earlier ``load()``) and
        tasks that are running or have run in this process are skipped, so calling it twice
        (from a callback too) schedules nothing twice. Tasks that came due while the
        server was down fire promptly in due order, a chunk per reactor turn; the rest fire at
        their original time. A row that cannot be restored (its function no longer imports or
        is not trusted, its object was deleted, the row is damaged) is moved to the store's
        quarantine with the reason and logged; the other tasks still load. Cancelled tasks that
        are stale are then dropped (they count as restored).
        """
        decoder = _codec.Decoder(self._lookup)
        callbacks: dict[str, Any] = {}
        failed_imports: dict[str, str] = {}
        overdue: list[Task] = []
        # Queued before anything else, so the backlog fires ahead of tasks that come due while
        # this (possibly long) load runs; it is filled below.
        self._clock.callLater(0, self._fire_overdue, overdue)
        bad: dict[int, str] = {}
        restored = 0
        # Ids this process or a later block will hand out: a row holding one was not written
        # by evasync, and a new task would clash with it.
        unissued = self._store.next_id_block() * ID_BLOCK
        with _gc_paused():
            for row in self._store.tasks():
                task_id = row[0]
                # A task whose callback is running (or ran, its row not deleted yet) is not
                # loaded again: it would run twice.
                if task_id in self._tasks or task_id in self._running:
                    continue
                if task_id >= unissued or self._next_id <= task_id < self._end_id:
                    bad[task_id] = ("its id was never handed out by this store (the row was "
                                    "written by another program?): a new task would clash with it")
                    continue
                try:
                    task = self._restore(row, decoder, callbacks, failed_imports)
                except Exception as exc:  # any reason at all: this row only
                    bad[task_id] = f"{type(exc).__name__}: {exc}"
                    continue
                self._tasks[task_id] = task
                restored += 1
                if task.state == CANCELLED:
                    heapq.heappush(self._cancelled, (task.due, task_id))
                elif task.state == SCHEDULED:
                    if task.due <= self._clock.seconds():  # time passes while a store loads
                        overdue.append(task)
                    else:
                        self._schedule(task)
        if bad:
            self._quarantine(bad)
        if self._cancelled and self.stale_timeout > 0:
            self._clean_quietly()
        return restored

    def _quarantine(self, bad: dict[int, str]) -> None:
        self._store.quarantine_tasks(bad, self._clock.seconds())
        for task_id, reason in list(bad.items())[:_LOGGED_ROWS]:
            log.warn("stored task {task_id} cannot be restored and was moved to the store's "
                     "quarantine: {reason}", task_id=task_id, reason=reason)
        if len(bad) > _LOGGED_ROWS:
            log.warn("{more} more stored task(s) were quarantined", more=len(bad) - _LOGGED_ROWS)

    def stop(self) -> None:
        """Unschedule everything (a graceful stop): persistent tasks stay in the store.

        A persistent task whose callback is running right now (it reloaded or closed the
        runtime) counts as run: its row is deleted here, while the store is still open.
        """
        if self._running and not self._stopped:
            self._ran(list(self._running))
        self._stopped = True
        for task in self._tasks.values():
            self._stop_call(task)
        self._tasks.clear()
        if self._owns_timers:
            self._timers.stop()
