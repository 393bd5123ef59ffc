"""A minimal virtual clock on ``heapq``: the floor the benchmarks hold virtual clocks against."""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable


class _Call:
    """What :meth:`HeapClock.callLater` returns: just enough of IDelayedCall for evasync."""

    __slots__ = ("time", "func", "args", "cancelled", "called")

    def __init__(self, when: float, func: Callable[..., Any], args: tuple) -> None:
        self.time = when
        self.func = func
        self.args = args
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        self.cancelled = True

    def active(self) -> bool:
        return not (self.cancelled or self.called)


class HeapClock:
    """A heap of calls, O(log n) to schedule and to fire; no reset, delay or keyword arguments."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, func: Callable[..., Any], *args: Any) -> _Call:
        call = _Call(self.now + delay, func, args)
        heapq.heappush(self._heap, (call.time, next(self._order), call))
        return call

    def getDelayedCalls(self) -> list[_Call]:
        return [call for _, _, call in self._heap if call.active()]

    def advance(self, seconds: float) -> None:
        """Fire, in time order, every call due within ``seconds`` (including ones they add)."""
        target = self.now + seconds
        heap = self._heap
        while heap and heap[0][0] <= target:
            when, _, call = heapq.heappop(heap)
            if call.cancelled:
                continue
            self.now = when
            call.called = True
            call.func(*call.args)
        self.now = target
