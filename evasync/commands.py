"""Commands and command sets, with the class attributes upstream game code expects.

A :class:`Command` subclass declares ``key``, ``aliases``, ``locks`` and a docstring (its help
text). A fresh instance runs each time the command is used, with ``caller``, ``args``,
``cmdstring``, ``raw_string`` and ``session`` set, through the hooks ``at_pre_cmd()`` (a true
return aborts), ``parse()``, ``func()`` and ``at_post_cmd()``. If ``func()`` is a generator it may
``yield`` seconds to pause or a question to ask (see :mod:`evasync.driver`); ``at_post_cmd()``
then runs when the generator ends (or, if ``func()`` returns a Deferred, when that fires).
Pauses are not persistent: a reload or the caller leaving closes the generator.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from twisted.logger import Logger, LogLevel

from . import _codec
from .errors import NotPersistableError
from .locks import LockError, parse_locks

if TYPE_CHECKING:
    from .objects import DefaultObject

log = Logger(namespace="evasync.commands")


class Command:
    """Base class of commands. Subclass it, set ``key`` and write ``func()``.

    Attributes:
        key: The command's name (matched case-insensitively).
        aliases: Other names for it.
        locks: A lock string; ``"cmd:..."`` decides who may use it (default everyone). An invalid
            lock string is a :class:`~evasync.locks.LockError` when the class is created.
        help_category: Group shown by ``help``.
        runs_during_questions: Whether the command runs while a question waits for the
            caller's answer (default False: every line typed then is the answer). When True,
            a line that is exactly the command's key or one of its aliases, in any case and
            with the spaces around it ignored, runs the command if the caller passes its
            ``cmd`` lock, and the question goes on waiting; with anything after the name
            (``quit now``) the line is the answer. On the demo server, ``quit`` and the
            superuser's ``reload`` set it; ``help`` does not.
        caller: (at run time) The object that typed the command.
        args: (at run time) Everything typed after the command name, as typed.
        cmdstring: (at run time) The name or alias the caller used.
        raw_string: (at run time) The whole input line.
        session: (at run time) The session the line came from, if any.
        obj: (at run time) The object the command's cmdset is on (the caller here).
    """

    key: str = ""
    aliases: Iterable[str] = ()
    locks: str = "cmd:all()"
    help_category: str = "general"
    runs_during_questions: bool = False

    _lockfuncs: dict = {"cmd": lambda obj: True}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.key, str):
            raise TypeError(f"{cls.__qualname__}.key must be a string, not {cls.key!r}")
        if isinstance(cls.aliases, str):  # upstream accepts "hit, stab" too
            cls.aliases = [alias for alias in cls.aliases.split(",") if alias.strip()]
        if not all(isinstance(a, str) for a in cls.aliases):
            raise TypeError(f"{cls.__qualname__}.aliases must be a list of strings, "
                            f"not {cls.aliases!r}")
        cls.key = cls.key.strip().lower()
        cls.aliases = tuple(a.strip().lower() for a in cls.aliases)
        try:
            cls._lockfuncs = parse_locks(cls.locks)
        except LockError as exc:
            raise LockError(f"{cls.__module__}.{cls.__qualname__}: {exc}") from None

    def __init__(self) -> None:
        self.caller: Any = None
        self.args = ""
        self.cmdstring = ""
        self.raw_string = ""
        self.session: Any = None
        self.obj: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r}>"

    @classmethod
    def access(cls, accessor: Any, access_type: str = "cmd") -> bool:
        """True if ``accessor`` passes this command's ``access_type`` lock (missing: allowed)."""
        check = cls._lockfuncs.get(access_type)
        return True if check is None else bool(check(accessor))

    @classmethod
    def get_help(cls) -> str:
        """The help text: the class docstring, dedented."""
        return inspect.cleandoc(cls.__doc__ or "") or "(no help written for this command)"

    def msg(self, text: Any = None, to_obj: Any = None, from_obj: Any = None, session: Any = None,
            **kwargs: Any) -> None:
        """Send ``text`` to the caller (or ``to_obj``)."""
        target = to_obj if to_obj is not None else self.caller
        target.msg(text, from_obj=from_obj, session=session or self.session, **kwargs)

    def at_pre_cmd(self) -> Any:
        """Called first; return a true value to stop the command here."""

    def parse(self) -> None:
        """Called before :meth:`func` to pick ``self.args`` apart."""

    def func(self) -> Any:
        """The command's work. May be a generator that yields seconds or questions (pauses and
        questions are not persistent), or return a Deferred to wait for."""
        self.msg(f"Command '{self.key}' does nothing yet (it has no func()).")

    def at_post_cmd(self) -> None:
        """Called last, after :meth:`func` (after its generator or Deferred has finished).

        Not called if ``func`` raised or its generator was closed (disconnect, delete, reload).
        """


class MuxCommand(Command):
    """A command that parses ``name[/switch/...] lhs [= rhs]`` like upstream's MuxCommand.

    Its :meth:`parse` sets the attributes below from ``args``, as upstream's does; a subclass
    that overrides ``parse()`` calls ``super().parse()`` to keep them.

    Attributes:
        switch_options: The switches the command knows (a class attribute; default none). When
            set, a switch may be typed in any case and abbreviated to a unique prefix, and is
            replaced by the option's own spelling; ambiguous and unknown switches are reported
            to the caller and dropped. When empty, every switch is kept as typed.
        rhs_split: The delimiter between ``lhs`` and ``rhs`` (a class attribute; default
            ``"="``), or a tuple of them: the first one of the tuple that occurs in the
            arguments is used.
        raw: (after parse) The arguments as typed, switches included.
        switches: (after parse) The switches: the ``/a/b`` right after the command name
            (``look/a/b``), as a list of names without the slashes.
        args: (after parse) The arguments, stripped, without the switches.
        arglist: (after parse) ``args`` split on whitespace.
        lhs: (after parse) ``args`` before the delimiter (all of it without one), stripped.
        rhs: (after parse) ``args`` after the delimiter, stripped; None without a delimiter.
        lhslist: (after parse) ``lhs`` split on commas, each part stripped (``[""]`` when
            ``lhs`` is empty).
        rhslist: (after parse) ``rhs`` split the same way; ``[]`` without a delimiter, as
            upstream.
    """

    switch_options: tuple[str, ...] = ()
    #: The delimiter between ``lhs`` and ``rhs``, or a tuple of them tried in order.
    rhs_split: str | tuple[str, ...] = "="

    def parse(self) -> None:
        raw = self.args
        args = raw.strip()
        switches: list[str] = []
        if raw.startswith("/") and len(args) > 1:
            head, *rest = raw[1:].split(None, 1)
            switches = [s.strip() for s in head.split("/") if s.strip()]
            args = rest[0].strip() if rest else ""
        if self.switch_options and switches:
            switches = self._check_switches(switches)
        delimiters = (self.rhs_split,) if isinstance(self.rhs_split, str) else self.rhs_split
        lhs, rhs = args, None
        for delimiter in delimiters:
            if delimiter and delimiter in args:
                lhs, rhs = args.split(delimiter, 1)
                break
        self.raw = raw
        self.switches = switches
        self.args = args
        self.arglist = args.split()
        self.lhs = lhs.strip()
        self.rhs = rhs.strip() if rhs is not None else None
        self.lhslist = [part.strip() for part in self.lhs.split(",")]
        self.rhslist = [part.strip() for part in self.rhs.split(",")] if rhs is not None else []

    def _check_switches(self, switches: list[str]) -> list[str]:
        options = list(self.switch_options)
        valid, ambiguous, unknown = [], [], []
        for switch in switches:
            lowered = switch.lower()
            found = [o for o in options if o.lower() == lowered] or [
                o for o in options if o.lower().startswith(lowered)]
            if len(found) == 1:
                valid.append(found[0])
            elif found:
                ambiguous.append(f"/{switch} (/{' or /'.join(found)}?)")
            else:
                unknown.append(f"/{switch}")
        if ambiguous:
            self.msg(f"{self.cmdstring}: ambiguous switch {', '.join(ambiguous)} ignored.")
        if unknown:
            self.msg(f"{self.cmdstring}: unknown switch {', '.join(unknown)} ignored; valid: "
                     f"/{' /'.join(options)}")
        return valid


class CmdSet:
    """A named group of commands. Fill it in :meth:`at_cmdset_creation` with :meth:`add`.

    Attributes:
        key: The set's name, for people reading it (default ``"cmdset"``): an object's sets are
            told apart by their class, not by key.
        commands: The set's commands, a dict from each command's key to its class, filled by
            :meth:`add` (a command with the key of one already there replaces it).
    """

    key: str = "cmdset"

    def __init__(self) -> None:
        self.commands: dict[str, type[Command]] = {}
        self.at_cmdset_creation()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r}: {', '.join(sorted(self.commands))}>"

    def at_cmdset_creation(self) -> None:
        """Hook: add the set's commands here."""

    def add(self, command: type[Command] | Command) -> None:
        """Add a command class (an instance is accepted and its class used)."""
        cls = command if isinstance(command, type) else type(command)
        if not issubclass(cls, Command):
            raise TypeError(f"{command!r} is not a Command subclass")
        if not cls.key:
            raise ValueError(f"{cls.__qualname__} has no key")
        self.commands[cls.key] = cls

    def remove(self, command: type[Command] | Command | str) -> None:
        """Remove a command by class, instance or key."""
        key = command if isinstance(command, str) else command.key
        self.commands.pop(key.lower(), None)

    def __iter__(self) -> Iterator[type[Command]]:
        return iter(self.commands.values())


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


def _cmdset_class(cmdset: type[CmdSet] | CmdSet | str, trust: _codec.Trust) -> type[CmdSet]:
    if isinstance(cmdset, str):
        cmdset = _codec.resolve_name(cmdset, trust)
    cls = cmdset if isinstance(cmdset, type) else type(cmdset)
    if not issubclass(cls, CmdSet):
        raise TypeError(f"{cmdset!r} is not a CmdSet subclass")
    return cls


def _check_storable(cls: type[CmdSet], trust: _codec.Trust) -> None:
    if not _codec.importable(cls):
        raise NotPersistableError(
            f"{cls.__module__}.{cls.__qualname__} cannot be stored: it would not be found again "
            "after a reload. Define it in an importable module (not __main__, not inside a "
            "function), or add it with persistent=False")
    if not trust.allows(cls.__module__):
        raise NotPersistableError(f"{cls.__module__}.{cls.__qualname__} cannot be stored: "
                                  f"{trust.refusal(cls.__module__)}")


class CmdSetHandler:
    """``obj.cmdset``: the command sets on an object, later ones overriding earlier ones.

    Sets listed in the typeclass's ``default_cmdsets`` are always there; sets added with
    ``persistent=True`` are remembered in the store and come back after a reload. As in Evennia,
    ``add()`` is not persistent unless asked.
    """

    _DB_KEY = "_cmdsets"
    _DEFAULT_KEY = "_cmdset_default"

    def __init__(self, obj: "DefaultObject") -> None:
        self._obj = obj
        self._trust = obj._runtime.trust
        self._sets: list[CmdSet] = []
        stored = list(obj.db.get(self._DB_KEY) or [])
        # The set of add_default() goes first, as it did when it was added.
        self._default: str | None = obj.db.get(self._DEFAULT_KEY)
        base = [self._default] if self._default in stored else []
        # One set that fails to load (a typo in a game module, say) must not take the others,
        # such as the one holding `reload`, down with it: log it and go on.
        for origin, cmdsets in (("base", base),
                                ("default", getattr(type(obj), "default_cmdsets", ())),
                                ("stored", [path for path in stored if path not in base])):
            for cmdset in cmdsets:
                try:
                    self._sets.append(_cmdset_class(cmdset, self._trust)())
                except Exception:
                    log.failure("{obj}: {origin} cmdset {cmdset!r} not loaded", obj=repr(obj),
                                origin=origin, cmdset=cmdset, level=LogLevel.error)

    def add(self, cmdset: type[CmdSet] | CmdSet | str, persistent: bool = False) -> None:
        """Add a command set (class, instance or import path).

        Args:
            persistent: Remember it in the store so it is back after a reload; needs the class
                to be importable. Default False, as in Evennia: the set lasts until a reload.

        Adding a set of a class that is already there replaces it.

        Raises:
            NotPersistableError: ``persistent=True`` and the class could not be found again by
                its import path (defined in ``__main__`` or inside a function); nothing is added.
        """
        cls = _cmdset_class(cmdset, self._trust)
        path = f"{cls.__module__}:{cls.__qualname__}"
        if persistent:
            _check_storable(cls, self._trust)  # before anything changes: refused means not added at all
        # Adding a set that is already there replaces it (and moves it last) instead of doubling it.
        self._sets = [s for s in self._sets if type(s) is not cls]
        self._sets.append(cmdset if isinstance(cmdset, CmdSet) else cls())
        if persistent:
            stored = list(self._obj.db.get(self._DB_KEY) or [])
            if path not in stored:
                setattr(self._obj.db, self._DB_KEY, stored + [path])

    def add_default(self, cmdset: type[CmdSet] | CmdSet | str, persistent: bool = True) -> None:
        """Add the object's base command set, first in line (the others override it) and
        stored unless ``persistent=False``: what Evennia games call in
        ``at_object_creation()``. A new default replaces the one added before."""
        cls = _cmdset_class(cmdset, self._trust)
        path = f"{cls.__module__}:{cls.__qualname__}"
        previous = self._default or self._obj.db.get(self._DEFAULT_KEY)
        if previous and previous != path:
            try:
                self.remove(previous)
            except (LookupError, TypeError):
                pass  # its class is gone: nothing of it is loaded anyway
        self.add(cmdset, persistent=persistent)
        self._sets.insert(0, self._sets.pop())
        self._default = path
        if persistent:
            stored = list(self._obj.db.get(self._DB_KEY) or [])
            setattr(self._obj.db, self._DB_KEY, [path] + [p for p in stored if p != path])
            setattr(self._obj.db, self._DEFAULT_KEY, path)

    def remove(self, cmdset: type[CmdSet] | CmdSet | str) -> bool:
        """Remove a command set (and forget it in the store). True if it was there."""
        cls = _cmdset_class(cmdset, self._trust)
        before = len(self._sets)
        self._sets = [s for s in self._sets if type(s) is not cls]
        stored = list(self._obj.db.get(self._DB_KEY) or [])
        path = f"{cls.__module__}:{cls.__qualname__}"
        if path in stored:
            stored.remove(path)
            setattr(self._obj.db, self._DB_KEY, stored)
        return len(self._sets) != before

    def has(self, cmdset: type[CmdSet] | str) -> bool:
        """True if a set of this class is on the object."""
        cls = _cmdset_class(cmdset, self._trust)
        return any(type(s) is cls for s in self._sets)

    def all(self) -> list[CmdSet]:
        """The sets, in the order they apply (later override earlier)."""
        return list(self._sets)

    def commands(self) -> dict[str, type[Command]]:
        """Every command available through the sets, by key (the built-in ``help`` included)."""
        merged: dict[str, type[Command]] = {CmdHelp.key: CmdHelp}
        for cmdset in self._sets:
            merged.update(cmdset.commands)
        return merged
