"""From an input line to a command run: answer a waiting question, or find and run a command."""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any, Iterable

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .commands import Command

if TYPE_CHECKING:
    from .objects import DefaultObject

log = Logger(namespace="evasync.cmdhandler")


def match(commands: Iterable[type[Command]], line: str) -> tuple[type[Command], str, str] | None:
    """Find the command ``line`` starts with: the longest key or alias, case-insensitively.

    A name ending in a letter or digit must be followed by the end of the line, whitespace or a
    ``/`` (switches), so ``craft`` does not match ``crafty``.

    Returns:
        ``(command class, name as typed, rest of the line)`` or None.
    """
    lowered = line.lower()
    best: tuple[type[Command], str, str] | None = None
    for cls in commands:
        for name in (cls.key, *cls.aliases):
            if not name or not lowered.startswith(name):
                continue
            if best is not None and len(name) <= len(best[1]):
                continue
            end = len(name)
            if name[-1].isalnum() and end < len(line) and not (line[end].isspace()
                                                                or line[end] == "/"):
                continue
            best = (cls, line[:end], line[end:])
    return best


def execute_cmd(caller: "DefaultObject", raw_string: str, session: Any = None) -> defer.Deferred:
    """Handle one input line from ``caller``; see :meth:`DefaultObject.execute_cmd`."""
    driver = caller._runtime.driver
    line = raw_string.strip()
    if driver.is_asking(caller):
        # The line answers the question, unless it names a command that runs even then.
        urgent = [c for c in caller.cmdset.commands().values()
                  if c.runs_during_questions and c.access(caller, "cmd")]
        if not (urgent and line and match(urgent, line)):
            driver.answer(caller, raw_string)
            return defer.succeed(None)
    if not line:
        return defer.succeed(None)
    commands = caller.cmdset.commands().values()
    # Match among the commands the caller may use, so a locked one never hides an allowed one.
    found = match([c for c in commands if c.access(caller, "cmd")], line)
    if found is None:
        locked = match(commands, line)
        if locked is not None:
            caller.msg(f"Permission denied: you are not allowed to use '{locked[1]}'.",
                       session=session)
        else:
            caller.msg(_unknown(line, commands, caller), session=session)
        return defer.succeed(None)
    cls, cmdstring, args = found
    cmd = cls()
    cmd.caller = cmd.obj = caller
    cmd.session = session
    cmd.cmdstring = cmdstring
    cmd.args = args
    cmd.raw_string = raw_string
    try:
        if cmd.at_pre_cmd():
            return defer.succeed(None)
        cmd.parse()
        result = cmd.func()
    except Exception:
        _report(cmd, Failure())
        return defer.succeed(None)
    then = (lambda _: _post(cmd), lambda failure: _failed(failure, cmd))
    if inspect.isgenerator(result) or inspect.iscoroutine(result):
        return driver.run(result, caller, then)
    if isinstance(result, defer.Deferred):  # upstream commands may return one: wait for it
        return result.addCallbacks(*then)
    _post(cmd)
    return defer.succeed(None)


def _post(cmd: Command) -> None:
    try:
        cmd.at_post_cmd()
    except Exception:
        _report(cmd, Failure())


def _failed(failure: Failure, cmd: Command) -> None:
    from .driver import CallerGone

    if not failure.check(CallerGone):
        _report(cmd, failure)


def _report(cmd: Command, failure: Failure) -> None:
    log.failure("command {cmd!r} from {caller!r} ({line!r}) raised", failure, cmd=cmd,
                caller=cmd.caller, line=cmd.raw_string, level=LogLevel.error)
    if not getattr(cmd.caller, "deleted", False):
        cmd.caller.msg(f"Sorry, '{cmd.cmdstring}' failed with an error "
                       f"({failure.type.__name__}); it has been logged.", session=cmd.session)


def _unknown(line: str, commands: Iterable[type[Command]], caller: Any) -> str:
    word = line.split()[0]
    if len(word) > 40:
        word = word[:37] + "..."
    names = [n for c in commands if c.access(caller) for n in (c.key, *c.aliases)]
    close = difflib.get_close_matches(word.lower(), names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Command '{word}' is not available.{hint} Type 'help' for a list."


class CmdHelp(Command):
    """
    Show the available commands, or one command's help.

    Usage:
      help
      help <command>
    """

    key = "help"
    aliases = ["?"]

    def func(self) -> None:
        commands = [c for c in self.caller.cmdset.commands().values() if c.access(self.caller)]
        topic = self.args.strip().lower()
        if topic:
            found = [c for c in commands if topic == c.key or topic in c.aliases]
            if not found:
                self.msg(f"No help for '{topic}'. Type 'help' for a list.")
                return
            cls = found[0]
            aliases = f" (aliases: {', '.join(cls.aliases)})" if cls.aliases else ""
            self.msg(f"Help for '{cls.key}'{aliases}:\n{cls.get_help()}")
            return
        lines = ["Available commands:"]
        width = max(len(c.key) for c in commands)
        for cls in sorted(commands, key=lambda c: c.key):
            summary = cls.get_help().splitlines()[0]
            lines.append(f"  {cls.key.ljust(width)}  {summary}")
        lines.append("Type 'help <command>' for more.")
        self.msg("\n".join(lines))
