"""Callbacks and typeclasses the tests store in persistent tasks.

A persistent task can only name a module-level function or a method of a stored object, so these
live in an importable module rather than in the test files.
"""

from __future__ import annotations

from typing import Any

from evasync import DefaultCharacter
from evasync.commands import Command

#: What :func:`record` (and friends) were called with, in call order; cleared before each test.
CALLS: list[tuple[Any, ...]] = []


def record(*args: Any, **kwargs: Any) -> str:
    """Note the call; return something recognisable."""
    CALLS.append((args, kwargs))
    return f"recorded {args!r}"


def fail(message: str) -> None:
    raise RuntimeError(message)


def vanishing(*args: Any) -> None:
    """A function the tests delete from this module to simulate code that no longer imports."""
    CALLS.append(("vanishing", args))


class Hero(DefaultCharacter):
    """A typeclass with a method persistent tasks can name."""

    def at_object_creation(self) -> None:
        self.db.creations = (self.db.creations or 0) + 1

    def shout(self, text: str) -> str:
        self.msg(text.upper())
        CALLS.append(("shout", self.id, text))
        return text.upper()


class CmdBoil(Command):
    """Boil the kettle (a command whose method someone might try to delay persistently)."""

    key = "boil"

    def boil(self) -> None:
        CALLS.append(("boil",))


class Kettle:
    """An arbitrary object: neither plain data nor a stored game object."""

    def whistle(self) -> None:
        CALLS.append(("whistle",))


class Almanac:
    """A class whose classmethod is a storable callback (looked up anew, it is equal, not the same)."""

    @classmethod
    def note(cls, text):
        CALLS.append(((text,), {}))
