"""From an input line to a command run: answer a waiting question, or find and run a command."""

from __future__ import annotations

import difflib
import inspect
import itertools
import operator
from typing import TYPE_CHECKING, Any, Callable, Iterable

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .commands import Command
from .locks import allow_all

if TYPE_CHECKING:
    from .objects import DefaultObject

log = Logger(namespace="evasync.cmdhandler")


class _Index:
    """The commands of one combination of cmdsets, by name: finds a line's command by looking up
    its prefixes, longest first, instead of trying every name of every command."""

    __slots__ = ("commands", "_by_name", "_lengths", "_checks")

    def __init__(self, commands: Iterable[type[Command]]) -> None:
        self.commands = list(commands)
        self._by_name: dict[str, list[type[Command]]] = {}
        for cls in self.commands:
            for name in (cls.key, *cls.aliases):
                if name:
                    found = self._by_name.setdefault(name, [])
                    if cls not in found:
                        found.append(cls)
        self._lengths = sorted({len(name) for name in self._by_name}, reverse=True)
        # Each command's "cmd" check, compiled once; None when it lets everyone in.
        self._checks: dict[type[Command], Callable[[Any], Any] | None] = {
            cls: _cmd_check(cls) for cls in self.commands}

    def allows(self, cls: type[Command], caller: Any) -> bool:
        check = self._checks[cls]
        return check is None or bool(check(caller))

    def find(self, line: str, caller: Any = None) -> tuple[tuple | None, tuple | None]:
        """``(found, first)``: the match among the commands ``caller`` may use (any command if
        ``caller`` is None), and the match among all commands, each as :func:`match` returns."""
        lowered = line.lower()
        size = len(line)
        first = None
        for length in self._lengths:
            classes = self._by_name.get(lowered[:length]) if length <= len(lowered) else None
            if classes is None:
                continue
            # A name ending in a letter or digit must end the word: "craft" is not "crafty".
            if lowered[length - 1].isalnum() and length < size and not (
                    line[length].isspace() or line[length] == "/"):
                continue
            for cls in classes:
                found = (cls, line[:length], line[length:])
                if first is None:
                    first = found
                if caller is None or self.allows(cls, caller):
                    return found, first
        return None, first


def _cmd_check(cls: type[Command]) -> Callable[[Any], Any] | None:
    if getattr(cls.access, "__func__", None) is not Command.access.__func__:
        return lambda caller: cls.access(caller, "cmd")  # a command with its own access()
    check = cls._lockfuncs.get("cmd")
    return None if check is None or check is allow_all else check


#: Indexes by the command classes of a caller's cmdsets, in order (what ``commands()`` merges),
#: shared by every caller with the same sets; a change to a set is a new key.
_indexes: dict[tuple, _Index] = {}
_MAX_INDEXES = 512
_chain = itertools.chain.from_iterable
_commands_of = operator.attrgetter("commands")


def _index_of(caller: "DefaultObject") -> _Index:
    handler = caller.cmdset
    key = tuple(_chain(map(dict.values, map(_commands_of, handler.all()))))
    index = _indexes.get(key)
    if index is None:
        if len(_indexes) >= _MAX_INDEXES:
            _indexes.clear()
        index = _indexes[key] = _Index(handler.commands().values())
    return index


def match(commands: Iterable[type[Command]], line: str) -> tuple[type[Command], str, str] | None:
    """Find the command ``line`` starts with: the longest key or alias, case-insensitively.

    A name ending in a letter or digit must be followed by the end of the line, whitespace or a
    ``/`` (switches), so ``craft`` does not match ``crafty``. Between equal names, the first
    command listed wins.

    Returns:
        ``(command class, name as typed, rest of the line)`` or None.
    """
    return _Index(commands).find(line)[0]


def execute_cmd(caller: "DefaultObject", raw_string: str, session: Any = None) -> defer.Deferred:
    """Handle one input line from ``caller``; see :meth:`DefaultObject.execute_cmd`."""
    driver = caller._runtime.driver
    line = raw_string.strip()
    if driver.is_asking(caller):
        # The line answers the question, unless it is just the name of a command that runs
        # even then ("quit"; "quit it" is an answer).
        typed = line.lower()
        if not any(c.runs_during_questions and typed in (c.key, *c.aliases)
                   and c.access(caller, "cmd") for c in caller.cmdset.commands().values()):
            driver.answer(caller, raw_string)
            return defer.succeed(None)
    if not line:
        return defer.succeed(None)
    index = _index_of(caller)
    # Only the matched command's lock is checked, but a locked one never hides an allowed one.
    found, first = index.find(line, caller)
    if found is None:
        if first is not None:
            caller.msg(f"Permission denied: you are not allowed to use '{first[1]}'.",
                       session=session)
        else:
            caller.msg(_unknown(line, index, caller), session=session)
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


def _unknown(line: str, index: _Index, caller: Any) -> str:
    word = line.split()[0]
    if len(word) > 40:
        word = word[:37] + "..."
    names = [n for c in index.commands if index.allows(c, caller) for n in (c.key, *c.aliases)]
    close = difflib.get_close_matches(word.lower(), names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"Command '{word}' is not available.{hint} Type 'help' for a list."
