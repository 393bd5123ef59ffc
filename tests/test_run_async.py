"""run_async: each executor gives the value or the error back, on the reactor thread.

Calls that only need the reactor's clock run in virtual time. The executors run on the real
reactor through twisted.trial's TestCase, which pytest runs: trial spins the global reactor for
each test (it can be run more than once that way) and fails a test that leaves a logged error,
an "Unhandled error in Deferred" or a pending call behind. Stopping the reactor for good happens
in a subprocess.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import pytest
from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from evasync import (EvasyncError, NotPicklableError, Runtime, create_object, run_async,
                     set_runtime)

from tests import _run_async_support as work

ROOT = pathlib.Path(__file__).resolve().parent.parent


# -- checked at call time, before anything runs (virtual time) ---------------------------------

def test_a_non_callable_is_refused_at_once(rt):
    with pytest.raises(TypeError, match="callable to execute, not 42"):
        run_async(42)


def test_an_unknown_executor_name_lists_the_choices(rt):
    with pytest.raises(ValueError, match="'thread', 'process', 'reactor' .* not 'proces'"):
        run_async(work.add, 1, 2, executor="proces")


def test_an_executor_must_be_a_name_or_an_executor(rt):
    with pytest.raises(TypeError, match="concurrent.futures.Executor, not 3"):
        run_async(work.add, 1, 2, executor=3)


def test_callbacks_and_their_kwargs_are_checked(rt):
    with pytest.raises(TypeError, match="at_return must be callable"):
        run_async(work.add, 1, 2, at_return="print")
    with pytest.raises(TypeError, match="at_err_kwargs must be a dict"):
        run_async(work.add, 1, 2, at_err=print, at_err_kwargs=["x"])


def _local_function() -> Callable[[], int]:
    def local() -> int:
        return 1
    return local


@pytest.mark.parametrize("args, kwargs, named", [
    ((lambda: 1,), {}, "the function"),
    ((_local_function(),), {}, "the function"),
    ((work.add, 1, threading.Lock()), {}, "positional argument 1"),
    ((work.add, 1, 2), {"scale": (n for n in range(3))}, "keyword argument 'scale'"),
])
def test_process_calls_that_cannot_be_pickled_are_refused_naming_what(rt, args, kwargs, named):
    with pytest.raises(NotPicklableError, match=f"cannot send {named} ") as caught:
        run_async(*args, executor="process", **kwargs)
    assert isinstance(caught.value, EvasyncError) and isinstance(caught.value, TypeError)
    assert "executor='thread'" in str(caught.value)  # says what to do instead
    assert "run_async" not in rt.services  # nothing was started


def test_a_game_object_method_cannot_go_to_a_process(rt):
    hero = create_object(key="Hero")
    with pytest.raises(NotPicklableError, match="cannot send the function"):
        run_async(hero.msg, "hello", executor="process")


# -- the "reactor" executor in virtual time ----------------------------------------------------

def test_reactor_executor_runs_on_a_later_turn(rt):
    ran, returned = [], []
    d = run_async(work.add, 1, 2, executor="reactor", scale=2, at_return=returned.append)
    d.addCallback(ran.append)
    assert ran == returned == []  # not during the call
    rt.advance(0)
    assert ran == returned == [6]


def test_cancelling_the_deferred_drops_the_call(rt):
    ran = []
    d = run_async(ran.append, "x", executor="reactor", at_return=ran.append, at_err=ran.append)
    failures = []
    d.addErrback(failures.append)
    d.cancel()
    rt.advance(1)
    assert ran == []
    assert failures[0].check(defer.CancelledError)


def test_a_reload_drops_unfinished_calls_quietly(rt, logged):
    ran = []
    waiting = run_async(ran.append, "x", executor="reactor", at_return=ran.append,
                        at_err=ran.append)
    failures = []
    waiting.addErrback(failures.append)
    run_async(ran.append, "y", executor="reactor")  # nothing waits on this one
    rt.reload()
    rt.advance(1)
    assert ran == []
    assert failures[0].check(defer.CancelledError)  # the caller that waited learns why
    assert "2 unfinished call(s) dropped" in " ".join(formatEvent(e) for e in logged)
    gc.collect()
    assert [e for e in logged if e.get("log_failure") is not None] == []


def test_virtual_time_tests_wait_for_threads_and_processes(rt):
    returned, failed = [], []
    for executor in ("thread", "process"):
        call = run_async(work.add, 1, 2, executor=executor, at_return=returned.append)
        assert rt.wait_for(call) == 3
    assert rt.wait_for(run_async(work.divide, 1, 0, executor="process",
                                 at_err=failed.append)) is None
    assert returned == [3, 3]
    assert failed[0].check(ZeroDivisionError)


# -- every executor on the real reactor --------------------------------------------------------

class LogWatch:
    """A twisted.logger observer: the events seen, and a Deferred for the next run_async error."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.events: list[dict] = []
        self._waiting: list[defer.Deferred] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)
        if self._is_failure(event):
            waiting, self._waiting = self._waiting, []
            for deferred in waiting:  # on a later turn, once run_async has finished logging
                self.reactor.callLater(0, deferred.callback, event)

    @staticmethod
    def _is_failure(event: dict) -> bool:
        return (event.get("log_namespace") == "evasync.run_async"
                and event.get("log_failure") is not None)

    def failures(self) -> list[dict]:
        """The run_async events that carry a traceback."""
        return [e for e in self.events if self._is_failure(e)]

    def unhandled(self) -> list[dict]:
        """Twisted's reports of a Deferred garbage-collected while holding a failure."""
        return [e for e in self.events if "Unhandled error" in formatEvent(e)]

    def next_failure(self) -> defer.Deferred:
        waiting: defer.Deferred = defer.Deferred()
        self._waiting.append(waiting)
        return waiting


class _RealReactorTest(unittest.TestCase):
    """A runtime on the real reactor with a throw-away store, current for the test."""

    timeout = 60

    def setUp(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="evasync-run_async-")
        self.runtime = Runtime(db_path=os.path.join(self.workdir, "evasync.db"))
        previous = set_runtime(self.runtime)
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.addCleanup(set_runtime, previous)
        self.addCleanup(self.runtime.close)
        self.reactor_thread = threading.get_ident()
        self.watch = LogWatch(self.runtime.reactor)
        globalLogPublisher.addObserver(self.watch)
        self.addCleanup(globalLogPublisher.removeObserver, self.watch)

    def on_reactor(self, record: list) -> Callable[..., None]:
        """A callback that records what it got, its keywords and whether it ran on the reactor."""
        def callback(value: Any, **kwargs: Any) -> None:
            record.append((value, kwargs, threading.get_ident() == self.reactor_thread))
        return callback

    @defer.inlineCallbacks
    def until(self, predicate: Callable[[], Any], seconds: float = 15.0) -> Any:
        """Wait, a reactor turn at a time, for something another process or thread does."""
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"still not true after {seconds} s: {predicate}")
            yield task.deferLater(self.runtime.reactor, 0.01, lambda: None)


class _ExecutorContract:
    """What every executor does; a subclass names the executor and where calls run."""

    executor: Any = None
    same_process = True
    same_thread = False

    def call(self, function: Callable, *args: Any, **kwargs: Any) -> defer.Deferred:
        return run_async(function, *args, executor=self.executor, **kwargs)

    @defer.inlineCallbacks
    def test_the_value_goes_to_at_return_then_to_the_deferred(self):
        returned = []
        result = yield self.call(work.add, 2, 3, at_return=self.on_reactor(returned))
        self.assertEqual(result, 5)
        self.assertEqual(returned, [(5, {}, True)])

    @defer.inlineCallbacks
    def test_the_call_runs_where_the_executor_says(self):
        pid, thread = yield self.call(work.where)
        self.assertEqual(pid == os.getpid(), self.same_process)
        if self.same_process:
            self.assertEqual(thread == self.reactor_thread, self.same_thread)

    @defer.inlineCallbacks
    def test_keywords_go_to_the_function_and_to_each_callback(self):
        returned, failed = [], []
        result = yield self.call(work.add, 1, 2, scale=10, at_return=self.on_reactor(returned),
                                at_return_kwargs={"caller": "alice"})
        self.assertEqual(result, 30)
        self.assertEqual(returned, [(30, {"caller": "alice"}, True)])
        yield self.call(work.divide, 1, 0, at_err=self.on_reactor(failed),
                       at_err_kwargs={"caller": "bob"})
        [(failure, kwargs, on_reactor)] = failed
        self.assertTrue(failure.check(ZeroDivisionError))
        self.assertEqual((kwargs, on_reactor), ({"caller": "bob"}, True))
        # keywords an executor might take for itself (Dask's submit has key= and priority=)
        self.assertEqual((yield self.call(work.label, key="k", priority=3)), "k:3")

    @defer.inlineCallbacks
    def test_an_error_goes_to_at_err_and_is_not_logged(self):
        failed = []
        result = yield self.call(work.divide, 1, 0, at_err=self.on_reactor(failed))
        self.assertIsNone(result)
        self.assertTrue(failed[0][0].check(ZeroDivisionError))
        self.assertEqual(failed[0][2], True)
        gc.collect()
        self.assertEqual(self.watch.failures() + self.watch.unhandled(), [])

    @defer.inlineCallbacks
    def test_an_error_nobody_takes_is_logged_once_with_its_traceback(self):
        deferred = self.call(work.divide, 1, 0)
        event = yield self.watch.next_failure()
        self.assertTrue(event["log_failure"].check(ZeroDivisionError))
        self.assertIn("run_async: divide raised", formatEvent(event))
        self.assertIn("ZeroDivisionError", event["log_failure"].getTraceback())
        after = []
        deferred.addBoth(after.append)
        # Code that adds callbacks later still gets the failure, as Deferreds behave...
        self.assertEqual(len(after), 1)
        self.assertTrue(after[0].check(ZeroDivisionError))
        del deferred, after
        gc.collect()
        self.assertEqual(len(self.watch.failures()), 1)
        self.assertEqual(self.watch.unhandled(), [])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @defer.inlineCallbacks
    def test_an_error_taken_by_the_waiting_code_is_not_logged(self):
        with self.assertRaises(ZeroDivisionError):
            yield self.call(work.divide, 1, 0)
        gc.collect()
        self.assertEqual(self.watch.failures() + self.watch.unhandled(), [])

    @defer.inlineCallbacks
    def test_an_error_in_at_return_is_logged_and_the_value_still_comes_back(self):
        def broken(result: int) -> None:
            raise KeyError(result)
        result = yield self.call(work.add, 1, 1, at_return=broken)
        self.assertEqual(result, 2)
        [event] = self.watch.failures()
        self.assertIn("at_return", formatEvent(event))
        self.assertTrue(event["log_failure"].check(KeyError))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    @defer.inlineCallbacks
    def test_an_error_in_at_err_is_logged(self):
        def broken(failure: Failure) -> None:
            raise KeyError("at_err")
        result = yield self.call(work.divide, 1, 0, at_err=broken)
        self.assertIsNone(result)
        [event] = self.watch.failures()
        self.assertIn("at_err", formatEvent(event))
        self.assertIn("ZeroDivisionError", formatEvent(event))  # what it was handling
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class TestThreadExecutor(_ExecutorContract, _RealReactorTest):
    executor = None  # the default: "thread"

    @defer.inlineCallbacks
    def test_the_pool_starts_on_first_use(self):
        self.assertNotIn("run_async", self.runtime.services)
        yield self.call(work.add, 1, 1)
        runner = self.runtime.services["run_async"]
        self.assertIsNotNone(runner.threads)
        self.assertIsNone(runner.processes)
        self.assertIsNot(runner.threads, self.runtime.reactor.threadpool)  # not the reactor's


class TestProcessExecutor(_ExecutorContract, _RealReactorTest):
    executor = "process"
    same_process = False

    @defer.inlineCallbacks
    def test_the_log_shows_the_workers_traceback(self):
        self.call(work.divide, 1, 0)
        event = yield self.watch.next_failure()
        text = formatEvent(event)
        self.assertIn("in the worker process", text)
        self.assertIn("in divide", text)
        self.flushLoggedErrors(ZeroDivisionError)

    @defer.inlineCallbacks
    def test_a_result_that_cannot_be_pickled_comes_back_as_an_error(self):
        failed = []
        yield self.call(threading.Lock, at_err=failed.append)
        self.assertIn("pickle", failed[0].getErrorMessage())

    @defer.inlineCallbacks
    def test_the_pool_starts_on_first_use(self):
        self.assertNotIn("run_async", self.runtime.services)
        yield self.call(work.add, 1, 1)
        runner = self.runtime.services["run_async"]
        self.assertIsNotNone(runner.processes)
        self.assertIsNone(runner.threads)

    @defer.inlineCallbacks
    def test_a_worker_that_dies_fails_its_call_and_the_next_call_gets_a_new_pool(self):
        failed = []
        yield self.call(work.die, at_err=failed.append)
        self.assertTrue(failed[0].check(concurrent.futures.process.BrokenProcessPool))
        self.assertEqual((yield self.call(work.add, 1, 1)), 2)


class TestReactorExecutor(_ExecutorContract, _RealReactorTest):
    executor = "reactor"
    same_thread = True

    @defer.inlineCallbacks
    def test_a_coroutine_function_is_awaited(self):
        async def later(value: int) -> int:
            await task.deferLater(self.runtime.reactor, 0, lambda: None)
            return value * 2
        self.assertEqual((yield self.call(later, 21)), 42)

    @defer.inlineCallbacks
    def test_no_pool_is_started(self):
        yield self.call(work.add, 1, 1)
        runner = self.runtime.services["run_async"]
        self.assertEqual((runner.threads, runner.processes), (None, None))


class TestExecutorInstance(_ExecutorContract, _RealReactorTest):
    """Any concurrent.futures.Executor; evasync does not shut it down."""

    def setUp(self) -> None:
        super().setUp()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self.addCleanup(self.executor.shutdown)

    @defer.inlineCallbacks
    def test_the_runtime_closing_leaves_the_executor_usable(self):
        yield self.call(work.add, 1, 1)
        self.runtime.close()
        self.assertEqual(self.executor.submit(work.add, 2, 2).result(timeout=10), 4)


class TestDaskExecutor(_ExecutorContract, _RealReactorTest):
    """A Dask distributed cluster's executor (``Client.get_executor()``), here a local one."""

    timeout = 120

    @classmethod
    def setUpClass(cls) -> None:
        from dask.distributed import Client, LocalCluster

        cls.cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                   dashboard_address=None)
        cls.client = Client(cls.cluster)
        cls.executor = cls.client.get_executor()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        cls.cluster.close()


# -- stopping -----------------------------------------------------------------------------------

class TestStopping(_RealReactorTest):

    @defer.inlineCallbacks
    def test_a_reload_drops_unfinished_calls_and_stops_busy_workers(self):
        pid_file = os.path.join(self.workdir, "worker.pid")
        gate = threading.Event()
        self.addCleanup(gate.set)
        called: list = []
        callbacks = {"at_return": called.append, "at_err": called.append}
        calls = [
            run_async(work.sleep_after_writing_pid, pid_file, 60, executor="process",
                      **callbacks),
            run_async(gate.wait, 60, **callbacks),
        ]
        yield self.until(lambda: os.path.exists(pid_file) and os.path.getsize(pid_file))
        worker = int(pathlib.Path(pid_file).read_text())
        calls.append(run_async(called.append, "the reactor call ran", executor="reactor",
                               **callbacks))
        outcomes: list = []
        for deferred in calls:
            deferred.addBoth(outcomes.append)

        self.runtime.reload()

        self.assertEqual([outcome.type for outcome in outcomes], [defer.CancelledError] * 3)
        self.assertNotIn("run_async", self.runtime.services)
        yield self.until(lambda: not work.alive(worker))
        yield task.deferLater(self.runtime.reactor, 0, lambda: None)
        self.assertEqual(called, [])
        # after the reload, new pools on first use
        self.assertEqual((yield run_async(work.add, 1, 2, executor="process")), 3)
        self.assertEqual((yield run_async(work.add, 1, 2)), 3)


def test_stopping_the_reactor_does_not_wait_for_running_calls():
    """A process call and a thread call each hold for 60 s; the server stops at once anyway."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c",
         "from tests._run_async_support import shutdown_scenario; shutdown_scenario()"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcomes"] == {"process": "CancelledError", "thread": "CancelledError"}
    assert report["stop_seconds"] < 5
    assert elapsed < 30, f"the process took {elapsed:.1f} s to exit"
    assert not work.alive(report["worker_pid"])


# -- quick scripts without an `if __name__ == "__main__":` guard -------------------------------

UNGUARDED = """
import sys
from twisted.internet import reactor
from evasync import run_async
from evasync.testing import VirtualRuntime
from tests._run_async_support import add

rt = VirtualRuntime()
done = run_async(add, 2, 3, executor="process")
print("result", rt.wait_for(done, timeout=120), flush=True)
rt.close()
"""

FROM_MAIN = """
from evasync import NotPicklableError, run_async
from evasync.testing import VirtualRuntime

def triple(x):
    return 3 * x

rt = VirtualRuntime()
try:
    run_async(triple, 5, executor="process")
except NotPicklableError as exc:
    print("refused:", exc, flush=True)
rt.close()
"""


def run_script(tmp_path, text):
    script = tmp_path / "quick.py"
    script.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)


def test_the_process_executor_works_from_an_unguarded_script(tmp_path):
    done = run_script(tmp_path, UNGUARDED)
    assert "bootstrapping" not in done.stderr
    assert done.stdout.splitlines() == ["result 5"], done.stderr


def test_a_function_defined_in_the_script_itself_is_refused_at_call_time(tmp_path):
    done = run_script(tmp_path, FROM_MAIN)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "defined in the script you ran" in done.stdout
    assert "executor='thread'" in done.stdout and "bootstrapping" not in done.stderr
