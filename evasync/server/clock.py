"""Game time that runs faster than the wall clock, for demos and tests (``evasync start --speed``)."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer


@implementer(IReactorTime)
class ScaledClock:
    """An ``IReactorTime`` whose seconds pass ``speed`` times faster than ``reactor``'s.

    ``delay(10, ...)`` on a clock of speed 10 fires after one real second. Stored due times are
    in game seconds, so a store's pending persistent tasks assume the speed they were made with:
    use a fast clock with a throw-away store.
    """

    def __init__(self, reactor: IReactorTime, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a number > 0, not {speed!r}")
        self._reactor = reactor
        self.speed = float(speed)

    def seconds(self) -> float:
        return self._reactor.seconds() * self.speed

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> IDelayedCall:
        return self._reactor.callLater(delay / self.speed, callable, *args, **kwargs)

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self._reactor.getDelayedCalls()
