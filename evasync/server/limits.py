"""How often a client may try to log in or make an account: counted per address and per name;
and (:class:`Episodes`) when to say in the log that a cap is refusing.

The counts live in the game process, keyed by the client's address and by the account name it
asked for, never by connection: hanging up and connecting again changes neither. Both kinds of
memory are bounded (the oldest keys are forgotten first).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Hashable

from twisted.internet.interfaces import IReactorTime

#: Keys remembered by one limit at most.
MAX_KEYS = 10_000
#: Seconds without a refusal that end an episode of refusals (see :class:`Episodes`).
FULL_QUIET = 60.0


class Episodes:
    """When to say that a cap is refusing: at the first refusal of an episode, which ends
    :data:`FULL_QUIET` seconds after the latest refusal, however many come and go meanwhile
    (so the log has a line per episode, not per attempt nor per departure)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._until = -math.inf

    def refused(self) -> bool:
        """Count a refusal now; True if it starts an episode (the one to log)."""
        now = self._clock.seconds()
        starts = now >= self._until
        self._until = now + FULL_QUIET
        return starts


class Backoff:
    """Failures per key: after ``free`` of them, each further attempt must wait, ``first``
    seconds after the last failure, doubling with each failure up to ``longest``. A key is
    forgotten ``forget`` seconds after its last failure, or when it succeeds.
    """

    def __init__(self, clock: IReactorTime, free: int, first: float, longest: float,
                 forget: float, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self.free = free
        self.first = first
        self.longest = longest
        self.forget = forget
        self._max_keys = max_keys
        self._failures: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()

    def wait(self, key: Hashable) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        count, last = entry
        now = self._clock.seconds()
        if now - last >= self.forget:
            del self._failures[key]
            return 0.0
        if count < self.free:
            return 0.0
        return max(0.0, last + min(self.first * 2 ** (count - self.free), self.longest) - now)

    def count(self, key: Hashable) -> int:
        """Failures counted for ``key`` (0 once forgotten)."""
        self.wait(key)  # forgets it if its time is over
        entry = self._failures.get(key)
        return entry[0] if entry is not None else 0

    def failed(self, key: Hashable) -> None:
        count, _ = self._failures.pop(key, (0, 0.0))
        self._failures[key] = (count + 1, self._clock.seconds())
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class Window:
    """At most ``count`` events per key in any ``period`` seconds."""

    def __init__(self, clock: IReactorTime, count: int, period: float,
                 max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self.count = count
        self.period = period
        self._max_keys = max_keys
        self._times: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def wait(self, key: Hashable) -> float:
        """Seconds before ``key`` may have another event (0: now)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        now = self._clock.seconds()
        while times and times[0] <= now - self.period:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        return times[0] + self.period - now if len(times) >= self.count else 0.0

    def add(self, key: Hashable) -> None:
        times = self._times.pop(key, None) or deque()
        times.append(self._clock.seconds())
        while len(times) > self.count:
            times.popleft()
        self._times[key] = times
        while len(self._times) > self._max_keys:
            self._times.popitem(last=False)
