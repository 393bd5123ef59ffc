"""Virtual time for tests and docs: a runtime on a :class:`VirtualClock` with a throw-away store.

Example (the test suite runs it):

.. code-block:: python

    from evasync import create_object, delay
    from evasync.testing import VirtualRuntime

    with VirtualRuntime() as rt:
        hero = create_object(key="Hero")
        heard = rt.listen(hero)
        delay(10, hero.msg, "ten seconds later")
        rt.advance(10)
        assert heard.take() == ["ten seconds later"]
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import tempfile
import time
import weakref
from typing import Any, Callable, Iterable

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from .objects import DefaultObject
from .runtime import Runtime, current_runtime as get_runtime_or_none, set_runtime


# Not twisted.internet.base.DelayedCall: without __slots__ it made the clock 1.5x slower than a
# bare heap. Same contract and the same arithmetic (``time`` + ``delayed_time``).
@implementer(IDelayedCall)
class _Call:
    """What :meth:`VirtualClock.callLater` returns: an ``IDelayedCall``."""

    __slots__ = ("time", "delayed_time", "func", "args", "kw", "called", "cancelled", "_clock",
                 "_when", "_rank")

    def __init__(self, clock: "VirtualClock", time: float, func: Callable[..., Any],
                 args: tuple, kw: dict, rank: int) -> None:
        self.time = time
        self.delayed_time = 0.0
        self.func = func
        self.args = args
        self.kw = kw
        self.called = self.cancelled = 0
        self._clock = clock
        # The time and rank of its entry in the clock's heap (the rank None once cancelled).
        self._when = time
        self._rank: int | None = rank

    def getTime(self) -> float:
        """The time it fires at."""
        return self.time + self.delayed_time

    def active(self) -> bool:
        """True until it has fired or been cancelled."""
        return not (self.cancelled or self.called)

    def _check(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled
        if self.called:
            raise AlreadyCalled

    def cancel(self) -> None:
        """Unschedule it; AlreadyCancelled or AlreadyCalled if it is no longer pending."""
        self._check()
        self._clock._cancelled(self)
        self.cancelled = 1
        del self.func, self.args, self.kw

    def reset(self, secondsFromNow: float) -> None:
        """Fire ``secondsFromNow`` seconds from now instead."""
        self._check()
        new_time = self._clock.seconds() + secondsFromNow
        if new_time < self.time:
            self.delayed_time = 0.0
            self.time = new_time
        else:
            self.delayed_time = new_time - self.time
        self._clock._moved.add(self)

    def delay(self, secondsLater: float) -> None:
        """Fire ``secondsLater`` seconds later than planned (earlier if negative)."""
        self._check()
        self.delayed_time += secondsLater
        if self.delayed_time < 0.0:
            self.time += self.delayed_time
            self.delayed_time = 0.0
        self._clock._moved.add(self)

    def __repr__(self) -> str:
        func = getattr(self, "func", None)
        name = getattr(func, "__qualname__", None) or repr(func)
        return (f"<VirtualClock call at {self.getTime()!r} called={self.called} "
                f"cancelled={self.cancelled} {name}>")


@implementer(IReactorTime)
class VirtualClock:
    """An ``IReactorTime`` whose time moves only when you :meth:`advance` it.

    A drop-in for ``twisted.internet.task.Clock`` that stays fast with many pending calls (a heap:
    scheduling and firing cost O(log n), where ``task.Clock`` re-sorts every call each time), and
    whose :meth:`advance` fires each call at its own time, including calls scheduled on the way.
    Calls due at the same time fire in the order ``task.Clock`` gives them: the order they were
    scheduled in, a rescheduled call going before the calls already due at its new time if it
    was moved later, after them if it was moved earlier.

    ``callLater`` returns an ``IDelayedCall`` (``cancel``, ``reset``, ``delay``, ``active``,
    ``getTime``), with the ``time``, ``func``, ``args``, ``kw``, ``called`` and ``cancelled``
    attributes of Twisted's ``DelayedCall``.
    """

    def __init__(self) -> None:
        self._now = 0.0
        # (time, rank, call) entries; an entry whose call was cancelled or rescheduled since (the
        # call's rank no longer matches) is stale and skipped when it comes to the top.
        self._heap: list[tuple[float, int, _Call]] = []
        self._stale = 0
        self._last = itertools.count()  # ranks after every call due at the same time
        self._first = itertools.count(-1, -1)  # ranks before every call due at the same time
        self._moved: set[_Call] = set()  # calls rescheduled since their heap entry was made

    def seconds(self) -> float:
        """The clock's current time: seconds since it was made, as advanced."""
        return self._now

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any,
                  **kw: Any) -> IDelayedCall:
        """Call ``callable(*args, **kw)`` once ``delay`` seconds have been advanced."""
        if self._moved:
            self._settle()
        rank = next(self._last)
        call = _Call(self, self._now + delay, callable, args, kw, rank)
        heapq.heappush(self._heap, (call.time, rank, call))
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        """The pending calls, soonest first."""
        return [call for _, rank, call in sorted(self._heap) if rank == call._rank]

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing in due order every call that comes due (0: those due now).

        Each call fires with the clock at its own time, and a call scheduled by another one fires
        within the same advance if it comes due before its end. An exception from a call
        propagates, the clock staying at that call's time.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if not seconds >= 0:
            raise ValueError(f"cannot go back in time ({seconds} s)")
        target = self._now + seconds
        heap = self._heap
        moved = self._moved
        pop = heapq.heappop
        while heap:
            if moved:
                self._settle()
                if not heap:
                    break
            when, rank, call = heap[0]
            if rank != call._rank:
                pop(heap)
                self._stale -= 1
                continue
            if when > target:
                break
            pop(heap)
            if when > self._now:
                self._now = when
            call.called = 1
            call.func(*call.args, **call.kw)
        self._now = target

    def pump(self, timings: Iterable[float]) -> None:
        """Advance by each amount in turn (as ``task.Clock.pump``)."""
        for amount in timings:
            self.advance(amount)

    def _cancelled(self, call: _Call) -> None:
        self._moved.discard(call)
        call._rank = None  # its entry is stale from now on
        self._stale += 1
        self._compact()

    def _compact(self) -> None:
        # Stale entries are dropped when they reach the top; this bounds them when many calls
        # are cancelled or moved without time passing.
        if self._stale > 64 and self._stale > len(self._heap) // 2:
            self._heap[:] = [entry for entry in self._heap if entry[1] == entry[2]._rank]
            heapq.heapify(self._heap)
            self._stale = 0

    def _settle(self) -> None:
        """Give the calls rescheduled since the last call was made or fired their new place.

        As task.Clock, which re-sorts its list (stably) at those moments: among the calls due at
        the same time, a call moved there from earlier goes first, one moved from later goes
        last, each group in the order the calls had before.
        """
        moved = sorted((call._when, call._rank, call) for call in self._moved)
        self._moved.clear()
        later = [call for _, _, call in moved if call.getTime() > call._when]
        earlier = [call for _, _, call in moved if call.getTime() < call._when]
        for calls, ranks in ((reversed(later), self._first), (earlier, self._last)):
            for call in calls:
                call._when = call.getTime()
                call._rank = rank = next(ranks)
                heapq.heappush(self._heap, (call._when, rank, call))
                self._stale += 1
        self._compact()


class Recorder:
    """A session that records what an object is sent (and, with ``echo``, prints it).

    Attributes:
        lines: The lines received and not yet taken, oldest first.
        echo: Also print each line as it arrives.
        prefix: Put before each printed line (a player's name, say).
    """

    def __init__(self, echo: bool = False, prefix: str = "") -> None:
        self.lines: list[str] = []
        self.echo = echo
        self.prefix = prefix

    def send(self, text: str) -> None:
        """Record ``text``, one entry per line (an empty text is one empty line), as an object's
        :meth:`~evasync.DefaultObject.msg` sends it."""
        for line in text.splitlines() or [""]:
            self.lines.append(line)
            if self.echo:
                print(f"{self.prefix}{line}")

    def take(self) -> list[str]:
        """Return the lines recorded so far and forget them."""
        lines, self.lines = self.lines, []
        return lines


class VirtualRuntime(Runtime):
    """A :class:`~evasync.runtime.Runtime` whose time only moves when you :meth:`advance` it.

    Args:
        db_path: Store file; default a fresh file in a temporary directory, removed on close.
        install: Make it the current runtime now (it is also installed by ``with``).

    Used as a context manager it is current inside the block and closed at its end, the
    previous runtime coming back.
    """

    def __init__(self, db_path: str | os.PathLike | None = None, install: bool = True) -> None:
        self._remove_tmpdir = None
        if db_path is None:
            tmpdir = tempfile.mkdtemp(prefix="evasync-")
            db_path = os.path.join(tmpdir, "evasync.db")
            # Removed by close(), or at the latest when the interpreter exits (a runtime made
            # at a prompt is rarely closed).
            self._remove_tmpdir = weakref.finalize(self, shutil.rmtree, tmpdir, True)
        self._listeners: list[tuple[int, Recorder]] = []
        self._installed = install
        super().__init__(clock=VirtualClock(), db_path=db_path)
        self._previous = set_runtime(self) if install else None

    def __enter__(self) -> "VirtualRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def now(self) -> float:
        """Seconds of virtual time since the runtime was made."""
        return self.clock.seconds()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, firing every call due on the way in time order.

        Unlike a bare ``task.Clock.advance``, a call scheduled by another call (a chain of
        delays) fires at its own time within the same advance (see :class:`VirtualClock`).
        """
        self.clock.advance(seconds)

    def wait_for(self, deferred: Any, timeout: float = 10.0) -> Any:
        """Wait, in real time, for work running off the reactor (``run_async``) to report back.

        Spins the real reactor one step at a time, so results that threads and worker
        processes hand back with ``callFromThread`` are delivered; virtual time does not move.

        Returns:
            The Deferred's result (a :class:`~twisted.python.failure.Failure` if it failed).

        Raises:
            TimeoutError: if ``deferred`` has not fired within ``timeout`` seconds.
        """
        reactor = self.reactor
        deadline = time.monotonic() + timeout
        while not deferred.called:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{deferred!r} did not fire within {timeout} s")
            reactor.iterate(0.005)
        return deferred.result

    def listen(self, obj: DefaultObject, echo: bool = False, prefix: str = "") -> Recorder:
        """Connect a :class:`Recorder` to ``obj``; it stays connected across :meth:`reload`."""
        recorder = Recorder(echo=echo, prefix=prefix)
        obj.sessions.append(recorder)
        self._listeners.append((obj.id, recorder))
        return recorder

    def disconnect(self, obj: DefaultObject, session: Any = None) -> int:
        """A connection closed (see :meth:`Runtime.disconnect`); it is not reattached on reload."""
        self._listeners = [(i, r) for i, r in self._listeners
                           if not (i == obj.id and (session is None or r is session))]
        return super().disconnect(obj, session)

    def reload(self) -> int:
        """Simulate a graceful reload (see :meth:`Runtime.reload`), keeping listeners connected."""
        loaded = super().reload()
        for obj_id, recorder in self._listeners:
            try:
                self.objects.get(obj_id).sessions.append(recorder)
            except LookupError:
                pass
        return loaded

    def close(self) -> None:
        """Close the runtime, restore the previous current runtime, remove the temporary store."""
        super().close()
        if self._installed and get_runtime_or_none() is self:
            set_runtime(self._previous)
        self._installed = False
        if self._remove_tmpdir is not None:
            self._remove_tmpdir()
