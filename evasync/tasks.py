"""``delay`` and the task handler: scheduled calls with handles, optionally stored to survive reloads.

Each task lives in a dict keyed by its id and rides on one ``clock.callLater``; adding, firing and
cancelling cost the same however many tasks are pending. Persistent tasks are also written to the
store before :meth:`TaskHandler.add` returns and deleted only after their callback ran, so a task
fires at least once even if the process dies; a graceful stop never fires one twice.
"""

from __future__ import annotations

import json
import math
from numbers import Real
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from . import _codec
from .store import ID_BLOCK

if TYPE_CHECKING:
    from .runtime import Runtime

log = Logger(namespace="evasync.tasks")

SCHEDULED, PAUSED, CANCELLED, DONE = "scheduled", "paused", "cancelled", "done"

#: How many overdue tasks fire per reactor turn after a load, so players are not frozen by a
#: backlog that came due while the server was down.
OVERDUE_CHUNK = 500


def check_timedelay(timedelay: Any) -> float:
    """Return ``timedelay`` as a float; TypeError/ValueError if it is not a finite number >= 0."""
    kind = type(timedelay)
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


class Task:
    """The handle :func:`~evasync.delay` returns. Every method is safe on a finished task.

    A handle only ever acts on its own task: ids are never reused, so a handle kept after its task
    ran or was removed finds nothing and its methods return False (or None).
    """

    __slots__ = ("id", "_runtime", "callback", "args", "kwargs", "persistent", "due", "state",
                 "_called", "_call", "_deferred")

    def __init__(self, runtime: "Runtime", task_id: int, callback: Callable, args: tuple,
                 kwargs: dict, persistent: bool, due: float, state: str = SCHEDULED) -> None:
        self.id = task_id
        self._runtime = runtime
        self.callback = callback
        self.args = args
        self.kwargs = kwargs
        self.persistent = persistent
        self.due = due
        self.state = state
        self._called = False
        self._call = None
        self._deferred: defer.Deferred | None = None

    def __repr__(self) -> str:
        kind = "persistent " if self.persistent else ""
        return f"<{kind}Task {self.id} {_name(self.callback)} {self.state}>"

    def get_id(self) -> int:
        """The task's id, unique for the lifetime of the store (never reused)."""
        return self.id

    def active(self) -> bool:
        """True while the task is pending: scheduled or paused, neither run, cancelled nor removed."""
        return self._runtime.tasks.active(self.id)

    def exists(self) -> bool:
        """True while the task handler still holds the task (pending or cancelled, not yet removed)."""
        return self._runtime.tasks.exists(self.id)

    def cancel(self) -> bool:
        """Stop the task from firing but keep it (``do_task()`` can still run it).

        Returns:
            True if a pending task was stopped; False if it had already run, was cancelled or removed.
        """
        return self._runtime.tasks.cancel(self.id)

    def remove(self) -> bool:
        """Drop the task (and its stored copy). True if it existed, False otherwise."""
        return self._runtime.tasks.remove(self.id)

    def do_task(self) -> Any:
        """Run the callback now and remove the task. Returns the callback's result (False if gone)."""
        return self._runtime.tasks.do_task(self.id)

    def call(self) -> Any:
        """Run the callback now and leave the task as it was. Returns its result (False if gone)."""
        return self._runtime.tasks.call_task(self.id)

    def pause(self) -> bool:
        """Hold a scheduled task. True if it was scheduled and is now paused."""
        return self._runtime.tasks.pause(self.id)

    def unpause(self) -> bool:
        """Release a paused task: it fires at once if its time has passed, else at its time."""
        return self._runtime.tasks.unpause(self.id)

    @property
    def paused(self) -> bool:
        """True while the task is paused."""
        live = self._runtime.tasks._tasks.get(self.id)
        return live is not None and live.state == PAUSED

    @property
    def called(self) -> bool:
        """True once the callback has run (when it fired, or by ``do_task()`` or ``call()``)."""
        if self._called:
            return True
        live = self._runtime.tasks._tasks.get(self.id)
        return live is not None and live._called

    def get_deferred(self) -> defer.Deferred | None:
        """A Deferred that fires with the callback's result when the task runs.

        It errbacks with the callback's failure, or with ``CancelledError`` if the task is removed
        before running. None if the task no longer exists.
        """
        return self._runtime.tasks.get_deferred(self.id)


class TaskHandler:
    """Holds a runtime's tasks. ``evasync.TASK_HANDLER`` is the default runtime's handler."""

    def __init__(self, runtime: "Runtime") -> None:
        self._runtime = runtime
        self._clock = runtime.clock
        self._store = runtime.store
        self._tasks: dict[int, Task] = {}
        self._next_id = 0
        self._end_id = 0
        self._stopped = False
        #: Persistent tasks whose callback ran but whose stored row is not deleted yet.
        self._running: set[int] = set()

    def __len__(self) -> int:
        return len(self._tasks)

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
        """Schedule ``callback(*args, **kwargs)`` in ``timedelay`` seconds; see :func:`evasync.delay`."""
        seconds = check_timedelay(timedelay)
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        if self._stopped:
            raise RuntimeError("this task handler was stopped (the runtime was reloaded or "
                               "closed); use evasync.delay() or the new runtime's handler")
        if persistent:
            stored = (json.dumps(_codec.encode_callback(callback)),
                      _codec.dumps(args, f"argument list of {_name(callback)}"),
                      _codec.dumps(kwargs, f"keyword arguments of {_name(callback)}"))
        task = Task(self._runtime, self._new_id(), callback, args, kwargs, persistent,
                    self._clock.seconds() + seconds)
        if persistent:
            self._store.add_task(task.id, task.due, SCHEDULED, *stored)
        self._tasks[task.id] = task
        task._call = self._clock.callLater(seconds, self._fire, task)
        return task

    # -- running ---------------------------------------------------------------------------

    def _run(self, task: Task) -> None:
        """Run a due task's callback, routing a failure to its Deferred or to the log."""
        task._called = True
        deferred = task._deferred
        try:
            result = task.callback(*task.args, **task.kwargs)
        except Exception:
            failure = Failure()
            if deferred is not None:
                deferred.errback(failure)
            else:
                log.failure("task {task_id} ({callback}) raised", failure,
                            task_id=task.id, callback=_name(task.callback), level=LogLevel.error)
        else:
            if deferred is not None:
                deferred.callback(result)

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
        task.state = state
        if task.persistent:
            self._store.set_task_state(task.id, state, task.due)

    def _stop_call(self, task: Task) -> None:
        if task._call is not None:
            if task._call.active():
                task._call.cancel()
            task._call = None

    def cancel(self, task_id: int) -> bool:
        """Stop task ``task_id`` from firing, keeping it. True if a pending task was stopped."""
        task = self._tasks.get(task_id)
        if task is None or task.state not in (SCHEDULED, PAUSED):
            return False
        self._stop_call(task)
        self._set_state(task, CANCELLED)
        return True

    def _unschedule(self, task: Task) -> None:
        self._stop_call(task)
        del self._tasks[task.id]
        task.state = DONE

    def _forget(self, task: Task) -> None:
        self._unschedule(task)
        if task.persistent:
            self._store.delete_tasks((task.id,))

    def remove(self, task_id: int) -> bool:
        """Drop task ``task_id`` and its stored copy. True if it existed."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        self._forget(task)
        if task._deferred is not None and not task._deferred.called:
            task._deferred.cancel()
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
        task._called = True
        if task.persistent:
            self._running.add(task_id)
        try:
            result = task.callback(*task.args, **task.kwargs)
        except Exception:
            if task._deferred is not None:
                task._deferred.errback(Failure())
            raise
        else:
            if task._deferred is not None:
                task._deferred.callback(result)
            return result
        finally:
            if task.persistent:
                self._ran((task_id,))

    def call_task(self, task_id: int) -> Any:
        """Run task ``task_id``'s callback now, leaving it scheduled; False if there is no such task."""
        task = self._tasks.get(task_id)
        if task is None:
            return False
        task._called = True
        return task.callback(*task.args, **task.kwargs)

    def pause(self, task_id: int) -> bool:
        """Hold scheduled task ``task_id``. True if it was scheduled and is now paused."""
        task = self._tasks.get(task_id)
        if task is None or task.state != SCHEDULED:
            return False
        self._stop_call(task)
        self._set_state(task, PAUSED)
        return True

    def unpause(self, task_id: int) -> bool:
        """Release paused task ``task_id``: it fires at once if overdue, else at its time."""
        task = self._tasks.get(task_id)
        if task is None or task.state != PAUSED:
            return False
        self._set_state(task, SCHEDULED)
        task._call = self._clock.callLater(max(0.0, task.due - self._clock.seconds()),
                                           self._fire, task)
        return True

    def get_deferred(self, task_id: int) -> defer.Deferred | None:
        """The Deferred of task ``task_id`` (see :meth:`Task.get_deferred`), or None."""
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task._deferred is None:
            task._deferred = defer.Deferred()
        return task._deferred

    def all(self) -> list[Task]:
        """Handles of every task the handler holds, in id order."""
        return [self._tasks[i] for i in sorted(self._tasks)]

    # -- persistence -----------------------------------------------------------------------

    def load(self) -> int:
        """Restore and schedule the persistent tasks in the store; returns how many were restored.

        Tasks already held (added in this process, or restored by an earlier ``load()``) are
        skipped, so calling it twice schedules nothing twice. Tasks that came due while the
        server was down fire promptly in due order, a chunk per reactor turn; the rest fire at
        their original time. A task whose function no longer imports or whose object was deleted
        is logged with the reason and deleted from the store; the others still load.
        """
        get_object = self._runtime.objects.get
        decoder = _codec.Decoder(get_object)
        resolved: dict[str, Any] = {}
        overdue: list[Task] = []
        # Queued before anything else, so the backlog fires ahead of tasks that come due while
        # this (possibly long) load runs; it is filled below.
        self._clock.callLater(0, self._fire_overdue, overdue)
        broken: list[int] = []
        restored = 0
        for task_id, due, state, callback_text, args_text, kwargs_text in self._store.tasks():
            if task_id in self._tasks:
                continue
            try:
                callback = resolved.get(callback_text)
                if callback is None:
                    spec = json.loads(callback_text)
                    callback = _codec.decode_callback(spec, get_object)
                    if "path" in spec:
                        resolved[callback_text] = callback
                args = tuple(decoder.loads(args_text))
                kwargs = decoder.loads(kwargs_text)
            except Exception as exc:  # a missing object or function, or a damaged row
                log.warn("dropping stored task {task_id}: {reason}", task_id=task_id,
                         reason=str(exc) or repr(exc))
                broken.append(task_id)
                continue
            task = Task(self._runtime, task_id, callback, args, kwargs, True, due, state)
            self._tasks[task_id] = task
            restored += 1
            if state != SCHEDULED:
                continue
            wait = due - self._clock.seconds()  # time passes while a large store loads
            if wait <= 0:
                overdue.append(task)
            else:
                task._call = self._clock.callLater(wait, self._fire, task)
        if broken:
            self._store.delete_tasks(broken)
        return restored

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
