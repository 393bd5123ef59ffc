"""One policy for a failure nobody handled, shared by tasks, ``run_async`` and the driver.

When work evasync runs for you fails, the failure goes to the Deferred you were given. If
something was already waiting on that Deferred (an errback, ``await``, ``yield`` in
``inlineCallbacks``), it has the failure and evasync says nothing. If nothing was, the failure is
logged at once, once, where it happened, with its traceback; it still stays the Deferred's
result, so code that adds an errback later gets the failure, as Deferreds always behave.
Twisted's own report of an unhandled failure when the Deferred is garbage-collected is then
switched off for it, so the failure is reported exactly once.

A cancellation (a caller that left, a dropped ``run_async`` call, ``CancelledError`` in any
form) is not an error: it is left in the Deferred for whoever asks, and never reported.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import DebugInfo
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure


def unhandled(deferred: defer.Deferred) -> bool:
    """True if ``deferred`` has fired and still holds a failure nobody took."""
    return deferred.called and isinstance(deferred.result, Failure)


class _Reported(DebugInfo):
    """Twisted's record of a Deferred's unhandled failure, which it logs when the Deferred is
    garbage-collected; this one stays quiet about a failure evasync has already reported,
    however many callbacks are added later and pass it on. A new failure (a later callback
    that raises) is reported by Twisted as usual."""

    def __del__(self) -> None:
        if getattr(self.failResult, "_evasync_reported", False):
            self.failResult = None
        super().__del__()


def _hush(deferred: defer.Deferred) -> None:
    failure = deferred.result
    failure._evasync_reported = True
    info = deferred._debugInfo
    if info is None or type(info) is DebugInfo:
        quiet = _Reported()
        if info is not None:
            quiet.creator, quiet.invoker = info.creator, info.invoker
            info.failResult = None
        deferred._debugInfo = quiet
    deferred._debugInfo.failResult = failure


def fail(deferred: defer.Deferred, failure: Failure, log: Logger | None, message: str = "",
         **fields: Any) -> None:
    """Errback ``deferred`` with ``failure``; if nothing took it, log it once now.

    Args:
        deferred: The Deferred handed to the user.
        failure: What went wrong.
        log: Where to report a failure nobody took; None for a cancellation, which is never
            reported.
        message: The log message (a twisted.logger format string using ``fields``).
    """
    if deferred.called:
        # Its user cancelled it already (its result is a CancelledError): the failure has
        # nowhere to go, so it is reported here rather than lost.
        if log is not None and not failure.check(defer.CancelledError):
            log.failure(message, failure, level=LogLevel.error, **fields)
        return
    deferred.errback(failure)
    if unhandled(deferred):
        if log is not None and not deferred.result.check(defer.CancelledError):
            log.failure(message, deferred.result, level=LogLevel.error, **fields)
        _hush(deferred)


def cancelled(deferred: defer.Deferred, failure: Failure) -> None:
    """Errback ``deferred`` with a cancellation ``failure`` that is never reported."""
    fail(deferred, failure, None)


def cancel(deferred: defer.Deferred) -> None:
    """``deferred.cancel()``, the resulting ``CancelledError`` never reported."""
    if not deferred.called:
        deferred.cancel()
    if unhandled(deferred):
        _hush(deferred)
