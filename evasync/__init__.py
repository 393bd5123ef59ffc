"""evasync: ``delay``, ``@interactive`` and ``run_async`` for Twisted text-game servers."""

from .commands import CmdHelp, CmdSet, CmdSetHandler, Command, MuxCommand
from .driver import CallerGone, YieldError, ask, returnValue, sleep
from .interactive import interactive
from .locks import LockError
from .api import create_object, delay, get_object, search_object
from .errors import (EvasyncError, NotPersistableError, NotPicklableError, ObjectDeletedError,
                     StoreError)
from .objects import DefaultCharacter, DefaultObject
from .runtime import TASK_HANDLER, Runtime, get_runtime, now, set_runtime, use_runtime
from .run_async import run_async
from .tasks import Task, TaskHandler

__all__ = [
    "CallerGone",
    "CmdHelp",
    "CmdSet",
    "CmdSetHandler",
    "Command",
    "LockError",
    "MuxCommand",
    "YieldError",
    "ask",
    "interactive",
    "returnValue",
    "TASK_HANDLER",
    "DefaultCharacter",
    "DefaultObject",
    "EvasyncError",
    "NotPersistableError",
    "NotPicklableError",
    "ObjectDeletedError",
    "Runtime",
    "StoreError",
    "Task",
    "TaskHandler",
    "create_object",
    "delay",
    "get_object",
    "get_runtime",
    "now",
    "run_async",
    "search_object",
    "set_runtime",
    "sleep",
    "use_runtime",
]
