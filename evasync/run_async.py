"""``run_async``: run a function away from the game; its result or error comes back on the reactor.

Where the work runs is one choice, ``executor=``; everything after it is the same for every
choice: the outcome comes back to the reactor thread, goes to ``at_return`` or ``at_err``, then to
the returned Deferred, and a failure nobody takes is logged. The pools are made per runtime on
first use and shut down, without waiting for running work, when the runtime reloads or closes and
before the reactor shuts down.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import concurrent.futures.process
import functools
import io
import multiprocessing
import multiprocessing.spawn as spawn
import pickle
import reprlib
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from . import _failures
from .errors import NotPicklableError
from .runtime import get_runtime

if TYPE_CHECKING:
    from .runtime import Runtime

log = Logger(namespace="evasync.run_async")

#: The executors run_async knows by name (it also takes any ``concurrent.futures.Executor``).
EXECUTORS = ("thread", "process", "reactor")

#: Most ``executor="thread"`` calls that run at once; more wait for a free thread.
MAX_THREADS = 10


def _name(function: Any) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


class _DaemonThreadPool(ThreadPool):
    """A Twisted thread pool whose threads never keep the process alive.

    A running Python function cannot be interrupted, so stopping the server must not join it.
    """

    threadFactory = functools.partial(threading.Thread, daemon=True)


class _Job:
    """One ``run_async`` call, from submission until its outcome is delivered or it is dropped."""

    __slots__ = ("name", "at_return", "at_return_kwargs", "at_err", "at_err_kwargs", "deferred",
                 "over", "cancel_work")

    def __init__(self, name: str, at_return: Callable | None, at_return_kwargs: Mapping,
                 at_err: Callable | None, at_err_kwargs: Mapping,
                 canceller: Callable[["_Job"], None]) -> None:
        self.name = name
        self.at_return = at_return
        self.at_return_kwargs = at_return_kwargs
        self.at_err = at_err
        self.at_err_kwargs = at_err_kwargs
        self.deferred: defer.Deferred = defer.Deferred(canceller=lambda _: canceller(self))
        #: Read from worker threads too: once True, the work is not started and its outcome ignored.
        self.over = False
        self.cancel_work: Callable[[], Any] = lambda: None


def _call_pickled(payload: bytes) -> Any:
    """Runs in a worker process: unpack the call pickled by :func:`_pickled` and make it."""
    function, args, kwargs = pickle.loads(payload)
    return function(*args, **kwargs)


def _script_main() -> types.ModuleType | None:
    """``__main__`` if it is the user's own code (``python game.py`` or ``python -m game``),
    else None (an interactive session, ``python -c``).

    multiprocessing makes every new worker process import such a ``__main__`` again (to find
    what it defines); one without an ``if __name__ == "__main__":`` guard then starts its own
    work once more inside the worker and fails with multiprocessing's bootstrapping error.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return None
    if getattr(getattr(main, "__spec__", None), "name", None) or getattr(main, "__file__", None):
        return main
    return None


_PREPARING = threading.Lock()


@contextlib.contextmanager
def _workers_skip_main() -> Iterator[None]:
    """While worker processes start, leave ``__main__`` out of what multiprocessing tells them
    to import: nothing sent to them comes from it (:func:`_pickled` refuses that).

    multiprocessing reads that from ``spawn.get_preparation_data`` (for spawn and forkserver
    alike) and has no option for it, so that one function is wrapped while the pool starts its
    workers; ``__main__`` itself is left alone (other threads may be reading it).
    """
    if _script_main() is None:
        yield
        return
    real = spawn.get_preparation_data

    def without_main(name: str) -> dict:
        data = real(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _PREPARING:
        spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            spawn.get_preparation_data = real


class _MainFinder(pickle.Pickler):
    """A pickler that notes the first function, class or instance that lives in ``__main__``."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.found: Any = None

    def persistent_id(self, obj: Any) -> None:
        if self.found is None:
            owner = obj if isinstance(obj, (type, types.FunctionType)) else type(obj)
            if getattr(owner, "__module__", None) == "__main__":
                self.found = obj
        return None


def _pickled(function: Callable, args: tuple, kwargs: dict) -> bytes:
    """The call as bytes for a worker process, or NotPicklableError naming what cannot be sent."""
    try:
        if _script_main() is None:
            return pickle.dumps((function, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        buffer = io.BytesIO()
        finder = _MainFinder(buffer)
        finder.dump((function, args, kwargs))
    except Exception as exc:
        whole_error = exc
    else:
        if finder.found is None:
            return buffer.getvalue()
        main = _script_main()
        where = getattr(main, "__file__", None) or getattr(main.__spec__, "name", "__main__")
        raise NotPicklableError(
            f"run_async(executor='process') cannot send {reprlib.repr(finder.found)} to a worker "
            f"process: it is defined in the script you ran ({where}), which a worker process "
            "does not import (it would run the whole script again). Move it into a module of "
            "its own and import it from there, or use executor='thread'.")
    parts = [("the function", function)]
    parts += [(f"positional argument {index}", arg) for index, arg in enumerate(args)]
    parts += [(f"keyword argument {key!r}", value) for key, value in kwargs.items()]
    for what, value in parts:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise NotPicklableError(
                f"run_async(executor='process') cannot send {what} ({reprlib.repr(value)}) of "
                f"{_name(function)} to a worker process: {type(exc).__name__}: {exc}. Pass a "
                f"module-level function and plain data (numbers, strings, lists, dicts), or use "
                f"executor='thread'.") from exc
    raise NotPicklableError(
        f"run_async(executor='process') cannot send the call of {_name(function)} to a worker "
        f"process: {type(whole_error).__name__}: {whole_error}") from whole_error


def _process_context() -> Any:
    # Not fork: forking a process that runs threads (the reactor's, ours) can deadlock the child.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def _stop_process_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting: queued calls are cancelled, running ones killed.

    Killing is what keeps the interpreter's exit from waiting on a long call (concurrent.futures
    joins its pools at exit).
    """
    terminate_workers = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate_workers is not None:
        terminate_workers()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()


def _stop_thread_pool(pool: ThreadPool) -> None:
    # ThreadPool.stop joins its threads; a running call may take long, so join in the background.
    threading.Thread(target=pool.stop, name="evasync-run_async-stop", daemon=True).start()


class _Runner:
    """The pools and unfinished jobs of one runtime; its state changes in the reactor thread."""

    def __init__(self, runtime: "Runtime") -> None:
        self._runtime_clock = lambda: runtime.clock  # followed if tests swap the clock
        self.reactor = runtime.reactor
        self.stop_hooks = runtime.stop_hooks
        self.jobs: set[_Job] = set()
        self.threads: ThreadPool | None = None
        self.processes: concurrent.futures.ProcessPoolExecutor | None = None
        self.stopped = False
        self.stop_hooks.append(self.stop)
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            "before", "shutdown", self.stop, "the reactor is shutting down", from_reactor=True)

    # -- submitting ---------------------------------------------------------------------------

    def submit(self, job: _Job, function: Callable, args: tuple, kwargs: dict,
               executor: Any, payload: bytes | None) -> None:
        if executor == "reactor":
            call = self._runtime_clock().callLater(0, self._run_here, job, function, args, kwargs)
            job.cancel_work = lambda: call.cancel() if call.active() else None
        elif executor == "thread":
            self._thread_pool().callInThreadWithCallback(
                functools.partial(self._from_thread, job), self._run_in_thread, job, function,
                args, kwargs)
        elif executor == "process":
            self._bridge(job, self._submit_to_processes(payload))
        else:  # one callable: the call's keywords must not meet the executor's (Dask's key=...)
            self._bridge(job, executor.submit(functools.partial(function, *args, **kwargs)))
        self.jobs.add(job)

    def _thread_pool(self) -> ThreadPool:
        if self.threads is None:
            self.threads = _DaemonThreadPool(0, MAX_THREADS, name="evasync-run_async")
            self.threads.start()
        return self.threads

    def _submit_to_processes(self, payload: bytes) -> concurrent.futures.Future:
        with _workers_skip_main():  # workers start as a submit needs them
            if self.processes is not None:
                try:
                    return self.processes.submit(_call_pickled, payload)
                except concurrent.futures.process.BrokenProcessPool:
                    # A worker died (killed, os._exit); the calls it had failed with this
                    # same error. A broken pool refuses everything after: start a new one.
                    _stop_process_pool(self.processes)
            self.processes = concurrent.futures.ProcessPoolExecutor(mp_context=_process_context())
            return self.processes.submit(_call_pickled, payload)

    @staticmethod
    def _run_in_thread(job: _Job, function: Callable, args: tuple, kwargs: dict) -> Any:
        if job.over:  # dropped while it waited for a thread
            return None
        return function(*args, **kwargs)

    def _from_thread(self, job: _Job, succeeded: bool, outcome: Any) -> None:
        self.reactor.callFromThread(self._settle, job, succeeded, outcome)

    def _bridge(self, job: _Job, future: concurrent.futures.Future) -> None:
        job.cancel_work = future.cancel
        future.add_done_callback(
            lambda done: self.reactor.callFromThread(self._settle_future, job, done))

    def _settle_future(self, job: _Job, future: concurrent.futures.Future) -> None:
        if future.cancelled():
            self._settle(job, False, Failure(defer.CancelledError(
                f"the executor cancelled {job.name} before it ran")))
            return
        error = future.exception()
        if error is None:
            self._settle(job, True, future.result())
        else:
            self._settle(job, False, Failure(error))

    def _run_here(self, job: _Job, function: Callable, args: tuple, kwargs: dict) -> None:
        outcome = defer.maybeDeferred(function, *args, **kwargs)
        outcome.addCallbacks(lambda result: self._settle(job, True, result),
                             lambda failure: self._settle(job, False, failure))

    # -- delivering ---------------------------------------------------------------------------

    def _settle(self, job: _Job, succeeded: bool, outcome: Any) -> None:
        if job.over:
            return
        job.over = True
        self.jobs.discard(job)
        if succeeded:
            self._returned(job, outcome)
        else:
            self._failed(job, outcome)

    @staticmethod
    def _returned(job: _Job, result: Any) -> None:
        if job.at_return is not None:
            try:
                job.at_return(result, **job.at_return_kwargs)
            except Exception:
                log.failure("run_async: at_return {callback} (with the result of {function}) "
                            "raised", Failure(), callback=_name(job.at_return), function=job.name,
                            level=LogLevel.error)
        job.deferred.callback(result)

    @staticmethod
    def _failed(job: _Job, failure: Failure) -> None:
        if job.at_err is not None:
            try:
                job.at_err(failure, **job.at_err_kwargs)
            except Exception:
                log.failure("run_async: at_err {callback} (handling {error} from {function}) "
                            "raised", Failure(), callback=_name(job.at_err),
                            error=repr(failure.value), function=job.name, level=LogLevel.error)
            job.deferred.callback(None)
            return
        _failures.fail(job.deferred, failure, log, "run_async: {function} raised{remote}",
                       function=job.name, remote=_remote_traceback(failure))

    # -- cancelling and stopping --------------------------------------------------------------

    def cancel(self, job: _Job) -> None:
        """The Deferred's canceller: drop the job; the Deferred then fails with CancelledError."""
        if not job.over:
            job.over = True
            self.jobs.discard(job)
            job.cancel_work()

    def stop(self, reason: str = "the runtime was reloaded or closed",
             from_reactor: bool = False) -> None:
        """Drop every unfinished job and shut the pools down without waiting for running work.

        Dropped jobs call neither ``at_return`` nor ``at_err``; their Deferreds fail with
        ``CancelledError``, which is not reported if nothing waits on them.
        """
        if self.stopped:
            return
        self.stopped = True
        if self.stop in self.stop_hooks:
            self.stop_hooks.remove(self.stop)
        if not from_reactor:  # removing a trigger while it fires is deprecated
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
        jobs, self.jobs = self.jobs, set()
        if jobs:
            log.info("run_async: {count} unfinished call(s) dropped: {reason}", count=len(jobs),
                     reason=reason)
        for job in jobs:
            job.over = True
            job.cancel_work()
            _failures.cancelled(job.deferred, Failure(defer.CancelledError(
                f"run_async: {job.name} was dropped unfinished: {reason}")))
        if self.threads is not None:
            _stop_thread_pool(self.threads)
            self.threads = None
        if self.processes is not None:
            _stop_process_pool(self.processes)
            self.processes = None


def _remote_traceback(failure: Failure) -> str:
    """A worker process's traceback travels as the exception's cause (concurrent.futures)."""
    cause = getattr(failure.value, "__cause__", None)
    if type(cause).__name__ == "_RemoteTraceback":
        return f"\nin the worker process:{cause}"
    return ""


def _runner_for(runtime: "Runtime") -> _Runner:
    """The runtime's runner, made on first use; the runtime drops it at reload and close (its
    stop hook shuts the pools down first)."""
    runner = runtime.services.get("run_async")
    if runner is None or runner.stopped:
        runner = runtime.services["run_async"] = _Runner(runtime)
    return runner


def _check_executor(executor: Any) -> Any:
    if executor is None:
        return "thread"
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))} or a "
                             f"concurrent.futures.Executor, not {executor!r}")
        return executor
    if isinstance(executor, concurrent.futures.Executor):
        return executor
    raise TypeError(f"executor must be one of {', '.join(map(repr, EXECUTORS))} or a "
                    f"concurrent.futures.Executor, not {executor!r} "
                    f"(type {type(executor).__name__})")


def _check_callback(label: str, callback: Any, kwargs: Any) -> Mapping:
    if callback is not None and not callable(callback):
        raise TypeError(f"run_async: {label} must be callable or None, not {callback!r}")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"run_async: {label}_kwargs must be a dict or None, not {kwargs!r}")
    return kwargs


def run_async(to_execute: Callable[..., Any], *args: Any,
              at_return: Callable[..., Any] | None = None,
              at_return_kwargs: Mapping[str, Any] | None = None,
              at_err: Callable[..., Any] | None = None,
              at_err_kwargs: Mapping[str, Any] | None = None,
              executor: str | concurrent.futures.Executor | None = None,
              **kwargs: Any) -> defer.Deferred:
    """Run ``to_execute(*args, **kwargs)`` away from the game; deliver the outcome on the reactor.

    Call it from the reactor thread, as game code is. It returns at once; the call runs where
    ``executor`` says, and its outcome comes back to the reactor thread, where ``at_return`` or
    ``at_err`` may touch game state.

    In a test, under :class:`~evasync.testing.VirtualRuntime`, ``executor="reactor"`` runs on
    the runtime's virtual clock: ``advance(0)`` runs the call and delivers its outcome. Threads,
    processes and other executors report back through the real reactor instead, which
    :meth:`~evasync.testing.VirtualRuntime.wait_for` turns until the Deferred has fired (virtual
    time does not move); it returns the outcome, or raises TimeoutError after ``timeout``
    seconds:

    >>> from evasync import run_async
    >>> from evasync.testing import VirtualRuntime
    >>> runtime = VirtualRuntime()
    >>> on_the_reactor = []
    >>> _ = run_async(sum, [1, 2], executor="reactor").addCallback(on_the_reactor.append)
    >>> runtime.advance(0)
    >>> on_the_reactor
    [3]
    >>> runtime.wait_for(run_async(sum, [1, 2, 3]))    # in a thread
    6
    >>> runtime.close()

    How an outcome is delivered, in this order:

    * Success: ``at_return(result, **at_return_kwargs)`` is called, then the returned Deferred
      fires with ``result``. An exception raised by ``at_return`` is logged (with its traceback)
      and does not change what the Deferred fires with.
    * Failure with ``at_err``: ``at_err(failure, **at_err_kwargs)`` has handled it; the Deferred
      fires with None. An exception raised by ``at_err`` is logged.
    * Failure without ``at_err``: the Deferred fails with the failure. If what was already
      waiting on it (``await``, ``yield`` in ``inlineCallbacks``, an errback) takes the failure,
      that is where it went; otherwise it is logged once, at once, with its traceback (for a
      worker process, the worker's traceback too). The Deferred still holds the failure, so an
      errback added later gets it, as with any Deferred, and Twisted does not report it a
      second time. A failure is thus reported exactly once and never silently dropped.

    Cancelling the Deferred drops the call: not yet started, it never starts; started, its outcome
    is ignored; neither ``at_return`` nor ``at_err`` is called. A reload or close of the runtime,
    and the reactor's shutdown, drop every unfinished call the same way, their Deferreds failing
    with :class:`~twisted.internet.defer.CancelledError` (not reported when nothing waits on
    them); the pools are shut down without waiting for running calls, so stopping the server
    never hangs on them.

    Args:
        to_execute: The function to run.
        *args: Positional arguments for ``to_execute``.
        at_return: Called in the reactor thread with the result.
        at_return_kwargs: Extra keyword arguments for ``at_return``.
        at_err: Called in the reactor thread with the :class:`~twisted.python.failure.Failure`
            if ``to_execute`` raised.
        at_err_kwargs: Extra keyword arguments for ``at_err``.
        executor: Where ``to_execute`` runs:

            * ``"thread"`` (default): a Twisted thread pool (at most 10 calls run at once).
              Blocking I/O no longer blocks players; CPU-bound Python still competes with the
              reactor for the GIL, so players see some lag while it runs.
            * ``"process"``: a pool of worker processes, one per CPU, for CPU-heavy work. The
              function and arguments are pickled: a module-level function and plain data. The
              result must be picklable too.
            * ``"reactor"``: in the reactor thread, on a later turn of the reactor (the
              runtime's clock: a test's ``advance(0)`` runs it). Nobody else is served while
              it runs: it is what upstream
              Evennia's documentation page describes (its code uses a thread), kept for
              comparison and for short work. It may return
              a Deferred or be a coroutine function; its outcome is then awaited.
            * any :class:`concurrent.futures.Executor`: for example ``Client.get_executor()``
              of a Dask distributed cluster. evasync does not shut it down. Dask's executor
              submits with ``pure=True`` unless told otherwise: identical calls (the same
              function with the same arguments) run once and share the result. For work with
              side effects, use ``client.get_executor(pure=False)``.
        **kwargs: Keyword arguments for ``to_execute``.

    Returns:
        A :class:`~twisted.internet.defer.Deferred` that fires in the reactor thread as
        described above.

    Raises:
        TypeError: ``to_execute``, ``at_return`` or ``at_err`` is not callable, a ``*_kwargs``
            is not a mapping, or ``executor`` is neither a string nor an Executor.
        ValueError: ``executor`` is a string other than ``"thread"``, ``"process"`` and
            ``"reactor"``.
        NotPicklableError: With ``executor="process"``, the function or an argument cannot be
            pickled; the message names which one. Nothing was started.
    """
    if not callable(to_execute):
        raise TypeError(f"run_async needs a callable to execute, not {to_execute!r} "
                        f"(type {type(to_execute).__name__})")
    at_return_kwargs = _check_callback("at_return", at_return, at_return_kwargs)
    at_err_kwargs = _check_callback("at_err", at_err, at_err_kwargs)
    executor = _check_executor(executor)
    payload = _pickled(to_execute, args, kwargs) if executor == "process" else None
    runner = _runner_for(get_runtime())
    job = _Job(_name(to_execute), at_return, at_return_kwargs, at_err, at_err_kwargs,
               canceller=runner.cancel)
    runner.submit(job, to_execute, args, kwargs, executor, payload)
    return job.deferred
