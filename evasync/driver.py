"""The one generator driver, shared by ``Command.func`` and ``@interactive``.

A driven generator may yield:

* a number of seconds (int or float, >= 0): pause this generator only;
* a string: ask the caller that question and resume with their next input line (stripped);
* an :func:`ask` object: the same, with an optional timeout and default answer.

Anything else is thrown back into the generator as a :class:`YieldError`, so it can catch it.
Pauses and questions live in memory only: a reload or a disconnect closes the generator (its
``finally`` blocks run) and it is not resumed.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Generator

from twisted.internet import defer
from twisted.python.failure import Failure

from .errors import EvasyncError

if TYPE_CHECKING:
    from .runtime import Runtime


class YieldError(EvasyncError, TypeError):
    """Thrown into a driven generator that yielded something other than seconds or a question."""


class CallerGone(EvasyncError, defer.CancelledError):
    """A driven generator was closed because its caller disconnected or was deleted, or reload."""


class _ReturnValue(BaseException):
    # BaseException, so that a bare ``except Exception`` in user code does not swallow it.
    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value


def returnValue(value: Any = None) -> None:
    """End a driven generator with ``value`` (same as ``return value``; kept for upstream code).

    Raises:
        An internal exception the driver catches; do not call it outside a driven generator.
    """
    raise _ReturnValue(value)


class ask:
    """A question with an optional timeout: ``answer = yield ask("Sure?", timeout=30, default="no")``.

    Args:
        question: Sent to the caller.
        timeout: Seconds to wait for an answer; None waits until answered (or the caller leaves).
        default: The answer used when the timeout passes.
    """

    __slots__ = ("question", "timeout", "default")

    def __init__(self, question: str, timeout: float | None = None, default: Any = None) -> None:
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, not {question!r}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                    or not 0 <= timeout < math.inf:
                raise ValueError(f"timeout must be a finite number of seconds >= 0 or None, "
                                 f"not {timeout!r}")
        self.question = question
        self.timeout = timeout
        self.default = default

    def __repr__(self) -> str:
        return f"ask({self.question!r}, timeout={self.timeout!r}, default={self.default!r})"


try:  # upstream code may still use Twisted's (deprecated) returnValue; accept its exception
    from twisted.internet.defer import _DefGen_Return  # type: ignore
    _RETURNS: tuple = (_ReturnValue, _DefGen_Return)
except ImportError:  # pragma: no cover - removed in some future Twisted
    _RETURNS = (_ReturnValue,)


class _Run:
    """One driven generator: what it waits for and the Deferred of its outcome."""

    __slots__ = ("gen", "caller", "deferred", "call", "asking", "running", "closing")

    def __init__(self, gen: Generator, caller: Any) -> None:
        self.gen = gen
        self.caller = caller
        self.deferred: defer.Deferred = defer.Deferred()
        self.call: Any = None     # the pending clock call (pause or question timeout)
        self.asking: ask | None = None
        self.running = False      # inside gen.send()/throw(): it cannot be closed right now
        self.closing = False      # closed while running: close it when it next yields


class Driver:
    """Advances the runtime's paused and asking generators."""

    def __init__(self, runtime: "Runtime") -> None:
        self._clock = runtime.clock
        # Keyed by id(caller): any object can be a caller, hashable or not, and its runs keep it
        # alive (so its id is not reused) while it has an entry. By caller, so that a
        # disconnect or a deletion only looks at that caller's runs.
        self._runs: dict[int, set[_Run]] = {}
        self._questions: dict[int, deque[_Run]] = {}

    def run(self, gen: Generator, caller: Any) -> defer.Deferred:
        """Start driving ``gen`` for ``caller`` (it runs to its first yield at once).

        Returns:
            A Deferred firing with the generator's return value, or its exception.
        """
        run = _Run(gen, caller)
        self._runs.setdefault(id(caller), set()).add(run)
        self._step(run, None, None)
        return run.deferred

    def _step(self, run: _Run, value: Any, error: BaseException | None) -> None:
        run.call = None
        # A loop, not recursion: a generator that keeps catching YieldError and yielding
        # something wrong again must not overflow the stack.
        while True:
            try:
                run.running = True
                try:
                    yielded = run.gen.throw(error) if error is not None else run.gen.send(value)
                finally:
                    run.running = False
            except StopIteration as stop:
                self._finish(run, stop.value, None)
                return
            except _RETURNS as ret:
                self._finish(run, ret.value, None)
                return
            except Exception:
                self._finish(run, None, Failure())
                return
            if run.closing:  # it disconnected or deleted its own caller, or reloaded, meanwhile
                self._close(run)
                return
            error, value = self._wait(run, yielded), None
            if error is None:
                return

    def _wait(self, run: _Run, yielded: Any) -> BaseException | None:
        """Set ``run`` waiting for what it yielded; or return the error to throw back into it."""
        kind = type(yielded)
        if (kind is int or kind is float) and 0 <= yielded < math.inf:
            run.call = self._clock.callLater(yielded, self._step, run, None, None)
            return None
        if kind is str:
            return self._ask(run, ask(yielded))
        if kind is ask:
            return self._ask(run, yielded)
        return YieldError(
            f"a driven generator yielded {yielded!r} (type {kind.__module__}."
            f"{kind.__qualname__}); yield a number of seconds >= 0, a question string, "
            "or ask(question, timeout=..., default=...)")

    def _ask(self, run: _Run, question: ask) -> BaseException | None:
        caller = run.caller
        if caller is None or not callable(getattr(caller, "msg", None)):
            return YieldError(
                f"cannot ask {question.question!r}: the generator has no caller to ask")
        try:  # sent before queueing: a question that could not be sent waits for nothing
            caller.msg(question.question)
        except Exception as exc:
            return exc
        run.asking = question
        self._questions.setdefault(id(caller), deque()).append(run)
        if question.timeout is not None:
            run.call = self._clock.callLater(question.timeout, self._timed_out, run)
        return None

    def _timed_out(self, run: _Run) -> None:
        run.call = None
        self._unqueue(run)
        default, run.asking = run.asking.default, None
        self._step(run, default, None)

    def _unqueue(self, run: _Run) -> None:
        queue = self._questions.get(id(run.caller))
        if queue is not None:
            queue.remove(run)
            if not queue:
                del self._questions[id(run.caller)]

    def _forget(self, run: _Run) -> None:
        runs = self._runs.get(id(run.caller))
        if runs is not None:
            runs.discard(run)
            if not runs:
                del self._runs[id(run.caller)]

    def _finish(self, run: _Run, value: Any, failure: Failure | None) -> None:
        self._forget(run)
        if failure is None:
            run.deferred.callback(value)
        else:
            run.deferred.errback(failure)

    # -- input and shutdown ----------------------------------------------------------------

    def is_asking(self, caller: Any) -> bool:
        """True if a generator is waiting for ``caller``'s next input line."""
        return id(caller) in self._questions

    def answer(self, caller: Any, line: str) -> bool:
        """Give ``line`` (stripped) to the oldest question waiting on ``caller``.

        Returns:
            False if no question was waiting (the line is then a command).
        """
        queue = self._questions.get(id(caller))
        if not queue:
            return False
        run = queue.popleft()
        if not queue:
            del self._questions[id(caller)]
        if run.call is not None:
            run.call.cancel()
        run.asking = None
        self._step(run, line.strip(), None)
        return True

    def _close(self, run: _Run) -> None:
        if run.running:
            # A generator cannot close itself: finish the step, then close it at its yield.
            run.closing = True
            return
        if run.call is not None and run.call.active():
            run.call.cancel()
        run.call = None
        if run.asking is not None:
            self._unqueue(run)
            run.asking = None
        self._forget(run)
        try:
            run.gen.close()
        except Exception:
            failure = Failure()
            run.deferred.errback(failure)
            return
        run.deferred.errback(Failure(CallerGone("the caller left before the generator finished")))
        # Nobody waiting on the Deferred is not an error: don't report CallerGone as unhandled.
        # So only callbacks added before the close see CallerGone; later ones get None.
        run.deferred.addErrback(lambda f: f.trap(CallerGone) and None)

    def close_caller(self, caller: Any) -> int:
        """Close every generator driven for ``caller`` (disconnect or deletion). Returns how many."""
        runs = list(self._runs.get(id(caller), ()))
        for run in runs:
            self._close(run)
        return len(runs)

    def stop(self) -> None:
        """Close every driven generator (reload or shutdown): pauses are not persistent."""
        for runs in list(self._runs.values()):
            for run in list(runs):
                self._close(run)

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._runs.values())
