"""One policy for a failure nobody handled, shared by tasks, ``run_async`` and the driver.

When work evasync runs for you fails, the failure goes to the Deferred you were given. If
something was already waiting on that Deferred (an errback, ``await``, ``yield`` in
``inlineCallbacks``), it has the failure and evasync says nothing. If nothing was, the failure is
logged at once, once, where it happened, with its traceback; it still stays the Deferred's
result, so code that adds an errback later gets the failure, as Deferreds always behave.
Twisted's own report of an unhandled failure when the Deferred is garbage-collected is then
switched off for it, so the failure is reported exactly once.

A cancellation (a caller that left, a dropped ``run_async`` call) is not an error: it is left in
the Deferred for whoever asks, and never reported.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure


def unhandled(deferred: defer.Deferred) -> bool:
    """True if ``deferred`` has fired and still holds a failure nobody took."""
    return deferred.called and isinstance(deferred.result, Failure)


def _hush(deferred: defer.Deferred) -> None:
    # Twisted keeps an unhandled failure in the Deferred's debug record and logs it when the
    # record is garbage-collected; clearing it there (and only there) leaves the result alone.
    # Should a later callback fail again, Twisted records and reports that new failure itself.
    info = getattr(deferred, "_debugInfo", None)
    if info is not None:
        info.failResult = None


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
    deferred.errback(failure)
    if unhandled(deferred):
        if log is not None:
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
