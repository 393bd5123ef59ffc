"""Helpers for the command, driver and @interactive tests: players, a log catcher, cmdsets.

Command sets that are added with ``persistent=True`` must be importable by path, so the ones the
reload tests use live here, at the top level of a module.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Iterator

import pytest
from twisted.logger import globalLogPublisher

from evasync import CmdSet, Command, DefaultCharacter, create_object
from evasync.testing import VirtualRuntime


@pytest.fixture
def rt() -> Iterator[VirtualRuntime]:
    """A fresh virtual-time runtime, current for the test and closed after it."""
    with VirtualRuntime() as runtime:
        yield runtime


class Player:
    """A character with a recorder on it: ``alice.types("wait")``, then ``alice.heard()``."""

    def __init__(self, runtime: VirtualRuntime, name: str, *cmdsets: Any,
                 typeclass: Any = None, persistent: bool = False) -> None:
        self.runtime = runtime
        self.obj = create_object(typeclass, key=name)
        for cmdset in cmdsets:
            self.obj.cmdset.add(cmdset, persistent=persistent)
        self.screen = runtime.listen(self.obj)

    def types(self, line: str) -> Any:
        """The player enters ``line``; returns execute_cmd's Deferred."""
        return self.obj.execute_cmd(line)

    def heard(self) -> list[str]:
        """The lines the player was sent since the last call."""
        return self.screen.take()

    def refetch(self) -> None:
        """After a reload: pick up the new Python object of the same stored character."""
        self.obj = self.runtime.objects.get(self.obj.id)


class LogCatcher:
    """The twisted.logger events emitted while it was installed."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def failures(self) -> list[dict]:
        """Events that carry a traceback (``log.failure`` and unhandled Deferred errors)."""
        return [e for e in self.events if e.get("log_failure") is not None]

    def failure_types(self) -> list[type]:
        return [e["log_failure"].type for e in self.failures()]


@contextlib.contextmanager
def caught_log() -> Iterator[LogCatcher]:
    """Catch every twisted.logger event; garbage-collect at the end so unhandled Deferred
    failures (logged when the Deferred is collected) are caught too."""
    catcher = LogCatcher()
    globalLogPublisher.addObserver(catcher.events.append)
    try:
        yield catcher
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(catcher.events.append)


# -- commands shared by several tests -----------------------------------------------------------

class CmdPing(Command):
    """
    Answer pong.

    Usage:
      ping
    """

    key = "ping"

    def func(self):
        self.msg("pong")


class CmdSay(Command):
    """
    Say something out loud.

    Usage:
      say <words>
    """

    key = "say"
    aliases = ["'"]

    def func(self):
        self.msg(f"You say: {self.args.strip()}")


class CmdSnooze(Command):
    """
    Doze off for five seconds.
    """

    key = "snooze"

    def func(self):
        self.msg("You doze off.")
        yield 5
        self.msg("You wake up.")


class BasicCmdSet(CmdSet):
    """ping, say and snooze."""

    key = "basic"

    def at_cmdset_creation(self):
        self.add(CmdPing)
        self.add(CmdSay)
        self.add(CmdSnooze)


class CmdDance(Command):
    """
    Dance a little.
    """

    key = "dance"

    def func(self):
        self.msg("You dance.")


class DanceCmdSet(CmdSet):
    """Only dance: added persistently by the reload tests."""

    key = "dance"

    def at_cmdset_creation(self):
        self.add(CmdDance)


class Outer:
    """A namespace, so that a nested cmdset class can be stored by its dotted path."""

    class NestedCmdSet(CmdSet):
        key = "nested"

        def at_cmdset_creation(self):
            self.add(CmdDance)


class DancerCharacter(DefaultCharacter):
    """A typeclass that always has the dance commands (``default_cmdsets``)."""

    default_cmdsets = ("tests._commands_support.DanceCmdSet",)


class VanishingCmdSet(CmdSet):
    """A set the tests delete from this module, to play code that no longer imports."""

    key = "vanishing"

    def at_cmdset_creation(self):
        self.add(CmdDance)


class BrokenDefaultsHero(DefaultCharacter):
    """A typeclass whose first default set no longer imports; the second must still load."""

    default_cmdsets = ("no_such_module_here:GoneCmdSet", "tests._commands_support.DanceCmdSet")
