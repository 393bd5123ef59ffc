"""Functions the run_async tests send to worker threads and processes, and the shutdown scenario.

Worker processes unpickle a function by importing its module, so these live in a small module
that imports only the standard library at the top.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import threading
import time


def where() -> tuple[int, int]:
    """The process and thread this call runs in."""
    return os.getpid(), threading.get_ident()


def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


def label(key: str, priority: int) -> str:
    """Keywords that Dask's ``Client.submit`` would take for itself if passed on as they are."""
    return f"{key}:{priority}"


def divide(a: float, b: float) -> float:
    return a / b


def die() -> None:
    """End the worker process at once, as the kernel's OOM killer would."""
    os._exit(1)


def sleep_after_writing_pid(path: str, seconds: float) -> None:
    """Say which process runs the call (by writing ``path``), then hold it for ``seconds``."""
    pathlib.Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def alive(pid: int) -> bool:
    """True if process ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def shutdown_scenario() -> None:
    """Run the real reactor, leave long calls in every executor, stop the reactor.

    Prints one JSON line: how each Deferred ended, the busy worker's pid and how long the stop
    took. The process must then exit at once, whatever is still running.
    """
    from twisted.internet import defer, task

    from evasync import Runtime, run_async, set_runtime

    workdir = tempfile.mkdtemp(prefix="evasync-run_async-")
    runtime = Runtime(db_path=os.path.join(workdir, "evasync.db"))
    set_runtime(runtime)
    reactor = runtime.reactor
    pid_file = os.path.join(workdir, "worker.pid")
    outcomes: dict[str, str] = {}
    report: dict = {"outcomes": outcomes}
    never = threading.Event()

    def note(name: str, deferred: defer.Deferred) -> None:
        deferred.addCallbacks(lambda result: outcomes.__setitem__(name, f"result {result!r}"),
                              lambda failure: outcomes.__setitem__(name, failure.type.__name__))

    def start() -> None:
        note("process", run_async(sleep_after_writing_pid, pid_file, 60, executor="process"))
        note("thread", run_async(never.wait, 60))

        def stop_when_the_worker_runs() -> None:
            if os.path.exists(pid_file) and os.path.getsize(pid_file):
                poll.stop()
                report["worker_pid"] = int(pathlib.Path(pid_file).read_text())
                report["stop_requested"] = time.monotonic()
                reactor.stop()

        poll = task.LoopingCall(stop_when_the_worker_runs)
        poll.start(0.01)
        reactor.callLater(30, reactor.stop)  # a bound, should the worker never start

    reactor.callWhenRunning(start)
    reactor.run()
    report["stop_seconds"] = time.monotonic() - report.pop("stop_requested", time.monotonic())
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit("run shutdown_scenario() through the tests")
