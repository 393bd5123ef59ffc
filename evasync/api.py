"""The module-level functions, acting on the current runtime."""

from __future__ import annotations

from typing import Any, Callable

from .objects import DefaultObject
from . import runtime as _runtime
from .runtime import get_runtime
from .tasks import Task


def delay(timedelay: float, callback: Callable[..., Any], *args: Any, persistent: bool = False,
          **kwargs: Any) -> Task:
    """Call ``callback(*args, **kwargs)`` in ``timedelay`` seconds, without blocking anyone.

    Args:
        timedelay: Seconds to wait: a finite number >= 0.
        callback: What to call. With ``persistent=True`` it must be a module-level function or a
            method of a stored game object.
        *args: Positional arguments for the callback.
        persistent: Store the task so it survives a reload (and a crash) of the server. It is
            on disk (in the store's task log) before ``delay`` returns.
        **kwargs: Keyword arguments for the callback.

    Returns:
        The task's handle, a :class:`~evasync.tasks.Task`, to cancel, pause or run it early.

    Raises:
        TypeError: ``timedelay`` is not a number or ``callback`` is not callable.
        ValueError: ``timedelay`` is negative, NaN or infinite.
        NotPersistableError: with ``persistent=True``, the callback or an argument cannot be
            stored; the message names it and says what to do instead.
    """
    runtime = _runtime._current  # get_runtime() without its call: every delay pays for it
    if runtime is None:
        runtime = get_runtime()
    return runtime.tasks._add(timedelay, callback, args, kwargs, persistent)


def create_object(typeclass: type | str | None = None, key: str | None = None) -> DefaultObject:
    """Create a stored game object.

    Args:
        typeclass: A subclass of :class:`~evasync.objects.DefaultObject` (or its import path);
            default :class:`~evasync.objects.DefaultCharacter`. It must be importable so the
            object comes back as its class after a reload.
        key: The object's name; default ``"<ClassName>#<id>"``.

    Returns:
        The new object; its ``at_object_creation()`` hook has run.
    """
    return get_runtime().objects.create(typeclass, key)


def get_object(obj_id: int | str) -> DefaultObject:
    """The stored object with id ``obj_id`` (or dbref ``"#N"``); LookupError if there is none."""
    return get_runtime().objects.get(obj_id)


def search_object(key: str) -> list[DefaultObject]:
    """Stored objects named ``key`` (case-insensitive), oldest first."""
    return get_runtime().objects.search(key)
