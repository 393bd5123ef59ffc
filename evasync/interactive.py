"""``@interactive``: a function that can pause and ask its caller questions."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _failures
from .driver import _RETURNS
from .runtime import get_runtime

log = Logger(namespace="evasync.interactive")


def interactive(func: Callable[..., Any]) -> Callable[..., defer.Deferred]:
    """Let ``func`` pause and ask its ``caller`` questions.

    ``func`` is a generator function (``yield 5`` pauses, ``answer = yield "Question?"`` asks)
    or, evasync only, an ``async def`` function (``await evasync.sleep(5)``,
    ``answer = await evasync.ask("Question?")``, and ``await`` on any Deferred). It must have a
    parameter named ``caller`` (the object questions go to); it may be a function, a method or a
    ``functools.partial``. The decorated callable returns a Deferred that fires with the body's
    return value (``return value`` or :func:`evasync.returnValue`), or fails with its exception,
    which is logged once if nothing was waiting for it. A plain ``func`` returns an
    already-fired Deferred of its result. Pauses and questions are not persistent: a reload or
    the caller leaving ends the body (its ``finally`` blocks run).

    (Evennia's ``@interactive`` returns None for a generator, and a plain function's value as
    is; portable code ignores what the call returns.)

    Raises:
        TypeError: at decoration time, if ``func`` is not callable or has no parameter named
            ``caller``.
    """
    if not callable(func):
        raise TypeError(f"@interactive needs a function, not {func!r}")
    name = getattr(func, "__qualname__", None) or repr(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"@interactive cannot read the parameters of {name} ({exc}); it "
                        "needs a function with a parameter named 'caller'") from None
    parameter = signature.parameters.get("caller")
    if parameter is None or parameter.kind in (inspect.Parameter.VAR_POSITIONAL,
                                               inspect.Parameter.VAR_KEYWORD):
        raise TypeError(f"@interactive function {name}{signature} needs a parameter "
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
            failed: defer.Deferred = defer.Deferred()
            _failures.fail(failed, Failure(), log, "@interactive {name} raised", name=name)
            return failed
        if inspect.isgenerator(result) or inspect.iscoroutine(result):
            return get_runtime().driver.run(result, caller)
        return defer.succeed(result)

    return wrapper
