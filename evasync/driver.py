"""The one driver of pausing code, shared by ``Command.func`` and ``@interactive``.

It drives two kinds of body, generators and coroutines, with the same rules.

A driven **generator** may yield:

* a number of seconds (int or float, >= 0): pause this generator only;
* a string: ask the caller that question and resume with their next input line (stripped);
* an :func:`ask` object: the same, with an optional timeout and default answer.

A driven **coroutine** (``async def``) may await:

* :func:`sleep` (seconds): pause this coroutine only;
* :func:`ask`: the caller's next input line, as above;
* any Twisted ``Deferred`` (``run_async(...)``, ``task.get_deferred()``, Twisted's own APIs),
  and other coroutines that await these.

Anything else that reaches the driver is thrown back into the body as a :class:`YieldError`
where it yielded or awaited, so it can catch it. What another event loop's library awaits may
fail before it gets that far: ``await asyncio.sleep(5)`` raises asyncio's own ``RuntimeError``
(no running event loop) inside ``asyncio.sleep``; use :func:`sleep`. Pauses and questions live in memory only: a reload, a disconnect or the
caller's deletion ends the body and it is not resumed: a generator is closed (``GeneratorExit``
at its ``yield``), a coroutine gets :class:`CallerGone` at its ``await``; their ``finally``
blocks run. What the body returns (``return value``, or :func:`returnValue`) is the result of
the Deferred the driver hands out; a failure nobody waits for is logged once (see
:mod:`evasync._failures`).
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from typing import Any, Callable, Coroutine, Generator, Union

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _failures
from ._timers import Timers
from .errors import EvasyncError

log = Logger(namespace="evasync.driver")

Body = Union[Generator, Coroutine]


class YieldError(EvasyncError, TypeError):
    """Thrown into a driven body that yielded or awaited something the driver cannot serve."""


class CallerGone(EvasyncError, defer.CancelledError):
    """A driven body was ended because its caller disconnected or was deleted, or a reload."""


class _ReturnValue(BaseException):
    # BaseException, so that a bare ``except Exception`` in user code does not swallow it.
    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value


def returnValue(value: Any = None) -> None:
    """End a driven generator with ``value`` (same as ``return value``; kept for upstream code).

    It raises an internal exception that the driver catches: call it only inside a driven
    generator.
    """
    raise _ReturnValue(value)


def _check_seconds(seconds: Any, what: str) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 <= seconds < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {seconds!r}")
    return float(seconds)


#: What the driver sends into an awaited ``sleep``/``ask`` to say it served it.
_SERVED = object()


def _not_driven(what: str) -> RuntimeError:
    return RuntimeError(
        f"{what} was awaited in a coroutine that evasync's driver does not run. Await it in a "
        "Command's async func() or in an @interactive async function (Twisted's "
        "ensureDeferred cannot serve it).")


class ask:
    """A question with an optional timeout.

    In a generator: ``answer = yield ask("Sure?", timeout=30, default="no")``; in a coroutine:
    ``answer = await ask("Sure?", timeout=30, default="no")``.

    Args:
        question: Sent to the caller.
        timeout: Seconds to wait for an answer; None waits until answered (or the caller leaves).
        default: The answer used when the timeout passes.

    Raises:
        TypeError: ``question`` is not a string.
        ValueError: ``timeout`` is not None nor a finite number >= 0.

    Attributes:
        question: The question, as given.
        timeout: The timeout, as given.
        default: The default answer, as given.
    """

    __slots__ = ("question", "timeout", "default", "_answer")

    def __init__(self, question: str, timeout: float | None = None, default: Any = None) -> None:
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, not {question!r}")
        if timeout is not None:
            _check_seconds(timeout, "timeout")
        self.question = question
        self.timeout = timeout
        self.default = default

    def __repr__(self) -> str:
        return f"ask({self.question!r}, timeout={self.timeout!r}, default={self.default!r})"

    def __await__(self) -> Generator[Any, Any, Any]:
        served = yield self
        if served is not _SERVED:
            raise _not_driven(f"evasync.{self!r}")
        return self._answer


class sleep:
    """``await sleep(seconds)``: pause a driven coroutine for ``seconds`` on the runtime's clock
    (virtual time under :class:`~evasync.testing.VirtualRuntime`); nobody else waits.

    Args:
        seconds: A finite number >= 0.

    Raises:
        ValueError: ``seconds`` is negative, NaN, infinite or not a number.

    Attributes:
        seconds: The pause, as a float.
    """

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = _check_seconds(seconds, "sleep()")

    def __repr__(self) -> str:
        return f"sleep({self.seconds!r})"

    def __await__(self) -> Generator[Any, Any, None]:
        served = yield self
        if served is not _SERVED:
            raise _not_driven(f"evasync.{self!r}")


try:  # upstream code may still use Twisted's (deprecated) returnValue; accept its exception
    from twisted.internet.defer import _DefGen_Return  # type: ignore
    _RETURNS: tuple = (_ReturnValue, _DefGen_Return)
except ImportError:  # pragma: no cover - removed in some future Twisted
    _RETURNS = (_ReturnValue,)

# A run's state flags.
_RUNNING = 1    # inside send()/throw() or setting up its wait: it cannot be closed right now
_CLOSING = 2    # closed while running: close it when the step is over
_DONE = 4       # finished or closed: nothing may step it again
_COROUTINE = 8  # the body is a coroutine (else a generator)


class _Run(defer.Deferred):
    """One driven body, and the Deferred of its outcome: one object, because a game may hold a
    hundred thousand paused commands."""

    __slots__ = ("body", "caller", "wait", "asking", "flags")

    def __init__(self, body: Body, caller: Any, canceller: Callable[["_Run"], None]) -> None:
        super().__init__(canceller)
        self.body = body
        self.caller = caller
        #: What it waits for: a timer entry (pause or question timeout), a Deferred, or None.
        self.wait: Any = None
        self.asking: ask | None = None
        self.flags = _COROUTINE if inspect.iscoroutine(body) else 0

    def __repr__(self) -> str:
        name = getattr(self.body, "__qualname__", type(self.body).__name__)
        return f"<evasync driven {name} for {self.caller!r}: {super().__repr__()}>"


class Driver:
    """Advances the runtime's paused and asking generators and coroutines.

    Args:
        clock: Schedules pauses and question timeouts.
        timers: The runtime's timers, shared with its task handler (default: its own).
    """

    def __init__(self, clock: IReactorTime, timers: Timers | None = None) -> None:
        self._timers = timers if timers is not None else Timers(clock)
        self._owns_timers = timers is None
        self._wake_run = self._wake  # one bound method for every pause
        self._time_out = self._timed_out
        self._cancel = self._cancel_run
        # Keyed by id(caller): any object can be a caller, hashable or not, and its runs keep it
        # alive (so its id is not reused) while it has an entry. By caller, so that a
        # disconnect or a deletion only looks at that caller's runs. A caller with one run
        # (the usual case) maps to the run itself, not to a container of one.
        self._runs: dict[int, _Run | list[_Run]] = {}
        self._questions: dict[int, deque[_Run]] = {}

    @property
    def clock(self) -> IReactorTime:
        """The clock pauses and question timeouts run on (settable; see ``Runtime.clock``)."""
        return self._timers.clock

    @clock.setter
    def clock(self, clock: IReactorTime) -> None:
        if self._timers.clock is not clock:
            self._timers.move_to(clock)  # what waits keeps the time it had left

    def run(self, body: Body, caller: Any,
            then: tuple[Callable[[Any], Any], Callable[[Failure], Any]] | None = None
            ) -> defer.Deferred:
        """Start driving ``body`` (a generator or a coroutine) for ``caller``: it runs to its
        first pause or question at once.

        Args:
            then: ``(callback, errback)`` added to the outcome's Deferred before the body
                starts, so a failure even before the first pause reaches the errback rather
                than being reported as unhandled.

        Returns:
            A Deferred firing with the body's return value, or its failure.
        """
        run = _Run(body, caller, self._cancel)
        if then is not None:
            run.addCallbacks(*then)
        key = id(caller)
        held = self._runs.get(key)
        if held is None:
            self._runs[key] = run
        elif type(held) is list:
            held.append(run)
        else:
            self._runs[key] = [held, run]
        self._step(run, None, None)
        return run

    def _step(self, run: _Run, value: Any, error: BaseException | Failure | None) -> None:
        run.wait = None
        # A loop, not recursion: a body that keeps catching YieldError and yielding something
        # wrong again must not overflow the stack.
        while True:
            run.flags |= _RUNNING
            try:
                try:
                    if error is None:
                        yielded = run.body.send(value)
                    elif isinstance(error, Failure):
                        yielded = error.throwExceptionIntoGenerator(run.body)
                    else:
                        yielded = run.body.throw(error)
                except StopIteration as stop:
                    self._finish(run, stop.value, None)
                    return
                except _RETURNS as ret:
                    self._finish(run, ret.value, None)
                    return
                except Exception:
                    self._finish(run, None, Failure())
                    return
                next_step = self._wait(run, yielded)
            finally:
                run.flags &= ~_RUNNING
            if run.flags & _CLOSING:  # it disconnected or deleted its caller, or reloaded
                self._close(run)
                return
            if next_step is None:
                return
            value, error = next_step

    def _wait(self, run: _Run, yielded: Any) -> tuple[Any, Any] | None:
        """Set ``run`` waiting for what it yielded (None); or return what to send or throw into
        it right away, as ``(value, error)``."""
        kind = type(yielded)
        if kind is ask:
            return self._ask(run, yielded)
        if run.flags & _COROUTINE:
            if kind is sleep:
                run.wait = self._timers.after(yielded.seconds, self._wake_run, run)
                return None
            if isinstance(yielded, defer.Deferred):
                return self._await(run, yielded)
            return None, YieldError(
                f"a driven coroutine awaited something that yielded {yielded!r} (type "
                f"{kind.__module__}.{kind.__qualname__}); evasync's driver serves "
                "evasync.sleep(seconds), evasync.ask(question, ...) and Twisted Deferreds "
                "(asyncio objects need an asyncio loop)")
        if (kind is int or kind is float) and 0 <= yielded < math.inf:
            run.wait = self._timers.after(yielded, self._wake_run, run)
            return None
        if kind is str:
            return self._ask(run, ask(yielded))
        return None, YieldError(
            f"a driven generator yielded {yielded!r} (type {kind.__module__}."
            f"{kind.__qualname__}); yield a number of seconds >= 0, a question string, "
            "or ask(question, timeout=..., default=...)")

    def _wake(self, run: _Run) -> None:
        """A pause is over."""
        self._step(run, _SERVED if run.flags & _COROUTINE else None, None)

    def _await(self, run: _Run, deferred: defer.Deferred) -> tuple[Any, Any] | None:
        # A Deferred that has fired already calls back at once, inside addBoth: its result is
        # then handed over in this loop rather than by recursing (a coroutine awaiting many
        # fired Deferreds in a row must not overflow the stack).
        at_once: list = [True]
        run.wait = deferred
        deferred.addBoth(self._awaited, run, at_once)
        at_once[0] = False
        if len(at_once) == 1:
            return None
        run.wait = None
        result = at_once[1]
        return (None, result) if isinstance(result, Failure) else (result, None)

    def _awaited(self, result: Any, run: _Run, at_once: list) -> None:
        if at_once[0]:
            at_once.append(result)
        elif run.wait is not None and not run.flags & _DONE:
            if isinstance(result, Failure):
                self._step(run, None, result)
            else:
                self._step(run, result, None)
        # The coroutine has the result (as Twisted's own coroutine driver does): consumed.

    def _ask(self, run: _Run, question: ask) -> tuple[Any, Any] | None:
        caller = run.caller
        if caller is None or not callable(getattr(caller, "msg", None)):
            return None, YieldError(
                f"cannot ask {question.question!r}: the body has no caller to ask")
        if getattr(caller, "deleted", False):  # nobody could ever answer: it ends here
            run.flags |= _CLOSING
            return None
        try:  # sent before queueing: a question that could not be sent waits for nothing
            caller.msg(question.question)
        except Exception as exc:
            return None, exc
        run.asking = question
        self._questions.setdefault(id(caller), deque()).append(run)
        if question.timeout is not None:
            run.wait = self._timers.after(question.timeout, self._time_out, run)
        return None

    def _answer_with(self, run: _Run, answer: Any) -> None:
        question, run.asking = run.asking, None
        if run.flags & _COROUTINE:
            question._answer = answer
            self._step(run, _SERVED, None)
        else:
            self._step(run, answer, None)

    def _timed_out(self, run: _Run) -> None:
        run.wait = None
        self._unqueue(run)
        self._answer_with(run, run.asking.default)

    def _unqueue(self, run: _Run) -> None:
        queue = self._questions.get(id(run.caller))
        if queue is not None:
            queue.remove(run)
            if not queue:
                del self._questions[id(run.caller)]

    def _forget(self, run: _Run) -> None:
        run.flags |= _DONE
        key = id(run.caller)
        held = self._runs.get(key)
        if held is run:
            del self._runs[key]
        elif type(held) is list and run in held:
            held.remove(run)
            if len(held) == 1:
                self._runs[key] = held[0]

    def _finish(self, run: _Run, value: Any, failure: Failure | None) -> None:
        self._forget(run)
        if failure is None:
            run.callback(value)
        else:
            _failures.fail(run, failure, log, "{body} raised", body=_describe(run.body))

    # -- input and shutdown ----------------------------------------------------------------

    def is_asking(self, caller: Any) -> bool:
        """True if a body is waiting for ``caller``'s next input line."""
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
        if run.wait is not None:
            Timers.cancel(run.wait)
        self._answer_with(run, line.strip())
        return True

    def _close(self, run: _Run) -> None:
        """End the body because its caller left (or a reload): its Deferred fails with
        CallerGone, which is never reported."""
        gone = CallerGone("the caller left (or the server reloaded) before it finished")
        if self._end(run, gone):
            # Nobody waiting on the Deferred is not an error: CallerGone is never reported,
            # but whoever adds an errback later still gets it.
            _failures.cancelled(run, Failure(gone))

    def _cancel_run(self, run: _Run) -> None:
        """The canceller of a run's Deferred: ``d.cancel()`` ends the body (Twisted then fails
        the Deferred with CancelledError), as cancelling a coroutine's Deferred does."""
        self._end(run, defer.CancelledError("its Deferred was cancelled"))

    def _end(self, run: _Run, error: defer.CancelledError) -> bool:
        """Stop whatever ``run`` waits for and end its body: a generator is closed, a coroutine
        gets ``error`` at its pending await. False if there was nothing (left) to end now, or
        the body failed while ending (that failure is its outcome)."""
        if run.flags & _DONE:
            return False
        if run.flags & _RUNNING:
            # A body cannot be ended from inside its own step: finish the step, then end it.
            run.flags |= _CLOSING
            return False
        wait, run.wait = run.wait, None
        if isinstance(wait, defer.Deferred):
            _failures.cancel(wait)  # as Twisted does: what a cancelled coroutine awaits is too
        elif wait is not None:
            Timers.cancel(wait)
        if run.asking is not None:
            self._unqueue(run)
            run.asking = None
        self._forget(run)
        try:
            if run.flags & _COROUTINE:
                self._throw_into(run, error)
            else:
                run.body.close()
        except Exception:
            _failures.fail(run, Failure(), log, "{body} raised while being ended",
                           body=_describe(run.body))
            return False
        return True

    @staticmethod
    def _throw_into(run: _Run, error: defer.CancelledError) -> None:
        """``error`` at the coroutine's pending await; if it awaits again, close it there."""
        try:
            yielded = run.body.throw(error)
        except (StopIteration, defer.CancelledError):
            return
        except _RETURNS:
            return
        # It awaited again (in a finally block, or after catching the error): nothing can be
        # served once it was ended, so it is closed at that await and the rest never runs.
        log.warn("{body} awaited {awaited!r} after it was ended ({why}); it was closed there "
                 "and the code after that await did not run", body=_describe(run.body),
                 awaited=yielded, why=type(error).__name__)
        run.body.close()

    def close_caller(self, caller: Any) -> int:
        """End every body driven for ``caller`` (disconnect or deletion). Returns how many."""
        held = self._runs.get(id(caller))
        runs = list(held) if type(held) is list else [held] if held is not None else []
        for run in runs:
            self._close(run)
        return len(runs)

    def stop(self) -> None:
        """End every driven body (reload or shutdown): pauses are not persistent."""
        for held in list(self._runs.values()):
            for run in (list(held) if type(held) is list else [held]):
                self._close(run)
        if self._owns_timers:
            self._timers.stop()

    def __len__(self) -> int:
        return sum(len(held) if type(held) is list else 1 for held in self._runs.values())


def _describe(body: Any) -> str:
    code = getattr(body, "gi_code", None) or getattr(body, "cr_code", None)
    name = getattr(body, "__qualname__", None) or repr(body)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name
