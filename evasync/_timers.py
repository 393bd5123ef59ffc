"""Many timed calls on one call of a clock.

A reactor's ``callLater`` costs about 470 bytes a call (its ``DelayedCall`` keeps a dict of a
dozen attributes); a game may hold a hundred thousand pending delays and paused commands. Here a
pending call is one small list ``[time, seq, func, arg, timers]`` in a heap, and the clock holds
a single call, for the soonest of them. Calls due at the same time run in the order they were scheduled,
as with Twisted's own clocks; on a clock advanced by hand (a test's ``Clock``) they also run in
time order with the clock's other calls when it jumps ahead. Two calls due at exactly the same time, one here and one made on the clock directly, may
run in either order.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

#: An entry: [time, seq, func, arg, timers]; func and arg are None once it was cancelled or ran.
Entry = list


class Timers:
    """Timed calls of ``func(arg)`` on ``clock``, sharing one of its delayed calls.

    Args:
        clock: The clock everything is scheduled on.
    """

    __slots__ = ("clock", "_heap", "_seq", "_call", "_call_time", "_dead", "_running",
                 "_stepwise")

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._stepwise = hasattr(clock, "advance")
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._call: Any = None      # the clock's call for the soonest entry
        self._call_time = 0.0
        self._dead = 0              # cancelled entries still in the heap
        self._running = False

    def __len__(self) -> int:
        return len(self._heap) - self._dead

    def at(self, when: float, func: Callable[[Any], Any], arg: Any) -> Entry:
        """Call ``func(arg)`` at clock time ``when`` (at once, on the clock's next turn, if that
        has passed). Returns the entry, for :meth:`cancel`."""
        entry = [when, next(self._seq), func, arg, self]
        heapq.heappush(self._heap, entry)
        if not self._running and (self._call is None or when < self._call_time
                                  or not self._call.active()):
            self._wake_at(when)
        return entry

    def after(self, seconds: float, func: Callable[[Any], Any], arg: Any) -> Entry:
        """Call ``func(arg)`` in ``seconds``."""
        return self.at(self.clock.seconds() + seconds, func, arg)

    @staticmethod
    def active(entry: Entry | None) -> bool:
        """True if ``entry`` is still to run."""
        return entry is not None and entry[2] is not None

    @staticmethod
    def cancel(entry: Entry) -> None:
        """Make sure ``entry`` does not run (nothing happens if it ran or was cancelled)."""
        if entry[2] is not None:
            entry[2] = entry[3] = None  # let go at once of what it would have called
            timers = entry[4]
            timers._dead += 1
            if timers._running:
                return
            heap = timers._heap
            if heap and heap[0] is entry:
                # It was the soonest: the clock's call moves on to the next live one (tests
                # that look at the clock's pending calls see what is really pending).
                while heap and heap[0][2] is None:
                    heapq.heappop(heap)
                    timers._dead -= 1
                timers._rewake()
            elif timers._dead > 64 and timers._dead * 2 > len(heap):
                timers._compact()

    def stop(self) -> None:
        """Cancel everything and the clock's call."""
        for entry in self._heap:
            entry[2] = entry[3] = None
        self._heap.clear()
        self._dead = 0
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2] is not None]
        heapq.heapify(self._heap)
        self._dead = 0

    def _rewake(self) -> None:
        if not self._heap:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
        elif self._call is None or self._heap[0][0] != self._call_time \
                or not self._call.active():
            self._wake_at(self._heap[0][0])

    def move_to(self, clock: IReactorTime) -> None:
        """Go on on ``clock``: every entry keeps the time it had left on the old one."""
        offset = clock.seconds() - self.clock.seconds()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        for entry in self._heap:
            entry[0] += offset
        self.clock = clock
        self._stepwise = hasattr(clock, "advance")
        if self._heap:
            self._wake_at(self._heap[0][0])

    def _wake_at(self, when: float) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call_time = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._run)

    def _run(self) -> None:
        self._call = None
        # A clock advanced by hand (a test's Clock) jumps: its own calls in between must run in
        # between, so only what was due at this call's time runs now and the rest gets calls
        # of its own. A reactor that fell behind runs everything due at once, as it does with
        # its own calls (a turn per due time would cost several microseconds a delay).
        now = self._call_time if self._stepwise else self.clock.seconds()
        # Only what was scheduled before this turn: a call that schedules another at once
        # (delay(0) in a callback) must not keep this loop going forever.
        last = next(self._seq)
        later: list[Entry] = []
        self._running = True
        try:
            heap = self._heap
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                func, arg = entry[2], entry[3]
                if func is None:
                    self._dead -= 1
                elif entry[1] > last:
                    later.append(entry)
                else:
                    entry[2] = entry[3] = None
                    func(arg)
        finally:
            self._running = False
            heap = self._heap
            for entry in later:
                heapq.heappush(heap, entry)
            while heap and heap[0][2] is None:  # cancelled ones need no wake-up of their own
                heapq.heappop(heap)
                self._dead -= 1
            if heap and self._call is None:
                self._wake_at(heap[0][0])
