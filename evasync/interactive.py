"""``@interactive``: a function that can pause and ask its caller questions."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from twisted.internet import defer

from .driver import _RETURNS
from .runtime import get_runtime


def interactive(func: Callable[..., Any]) -> Callable[..., defer.Deferred]:
    """Let ``func`` pause (``yield 5``) and ask (``answer = yield "Question?"``) its ``caller``.

    ``func`` must have a parameter named ``caller`` (the object questions go to); it may be a
    function or a method. The decorated callable returns a Deferred that fires with the
    generator's return value (``return value`` or :func:`evasync.returnValue`), or errbacks with
    its exception (logged by Twisted if nothing handles it). A non-generator ``func`` returns an
    already-fired Deferred of its result. Pauses and questions are not persistent: a reload or
    the caller leaving closes the generator (its ``finally`` blocks run).

    Raises:
        TypeError: at decoration time, if ``func`` has no parameter named ``caller``.
    """
    if not callable(func):
        raise TypeError(f"@interactive needs a function, not {func!r}")
    signature = inspect.signature(func)
    if "caller" not in signature.parameters or signature.parameters["caller"].kind in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise TypeError(f"@interactive function {func.__qualname__}{signature} needs a parameter "
                        "named 'caller': the object its questions are asked of")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        caller = bound.arguments["caller"]
        try:
            result = func(*args, **kwargs)
        except _RETURNS as ret:  # returnValue() in a plain function: the same as return
            return defer.succeed(ret.value)
        except Exception:
            return defer.fail()
        if inspect.isgenerator(result):
            return get_runtime().driver.run(result, caller)
        return defer.succeed(result)

    return wrapper
