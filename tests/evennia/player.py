"""Play evasync's transcripts on a real Evennia game: the other side of ``ProcessPlayer``.

Run by the Python of ``.venv-evennia`` (made by ``make test``), never by evasync's own::

    .venv-evennia/bin/python tests/evennia/player.py GAME_TEMPLATE REPO

``GAME_TEMPLATE`` is a migrated Evennia game directory (``evennia --init`` + ``evennia migrate``);
it is copied to a temporary directory, so every run starts from an empty world and leaves the
template untouched. ``REPO`` is the evasync checkout whose ``howtos`` package is played.

The howto modules are imported with their imports rewritten mechanically, as a reader porting
them would: every name of ``from evasync import ...`` that Evennia has is imported from where
Evennia keeps it (:data:`EVENNIA_HOMES`); a name Evennia lacks is dropped, so code that uses it
fails with NameError when it runs, exactly as it would in an Evennia game. Nothing else changes.

Each transcript is played in the one process, through Evennia's command handler
(``execute_cmd``), with Evennia's task handler on a ``twisted.internet.task.Clock``. Evennia
stores the due time of a persistent task as a wall-clock ``datetime``; so that a reload in the
middle of virtual time behaves as in a real game, the task handler's ``datetime.now`` reads that
clock too. What Evennia schedules on the real reactor (the answer to a question is handed to the
waiting generator on the reactor's next turn) is run after every step. A reload is what the
server does when its process restarts: tasks in memory and every cached object (with its
``ndb`` and non-persistent command sets) are dropped, then the stored tasks are loaded and
scheduled (``TASK_HANDLER.load()`` and ``create_delays()``).

The protocol (one JSON line in, one out, per transcript) is described by
``evasync.transcript.ProcessPlayer``.
"""

from __future__ import annotations

import ast
import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime

#: Where Evennia keeps the equivalent of each name evasync exports (Evennia 5.0 and 6.x).
#: ``now`` and ``ask`` have no equivalent and are dropped.
EVENNIA_HOMES = {
    "delay": "evennia.utils.utils",
    "interactive": "evennia.utils.utils",
    "run_async": "evennia.utils.utils",
    "TASK_HANDLER": "evennia.scripts.taskhandler",
    "Command": "evennia",
    "CmdSet": "evennia",
    "MuxCommand": "evennia.commands.default.muxcommand",
    "DefaultObject": "evennia",
    "DefaultCharacter": "evennia",
    "create_object": "evennia",
    "search_object": "evennia",
    "returnValue": "twisted.internet.defer",
}

PORTED_PACKAGE = "howtos"


def port_imports(source: str | bytes, filename: str) -> tuple[ast.Module, list[str]]:
    """Rewrite ``from evasync import ...`` as a reader porting to Evennia would.

    Returns the rewritten module and the names that were dropped (no Evennia equivalent).
    """
    tree = ast.parse(source, filename)
    dropped: list[str] = []

    class Rewriter(ast.NodeTransformer):
        def visit_ImportFrom(self, node: ast.ImportFrom) -> list[ast.stmt] | ast.stmt:
            if node.level or not node.module or node.module.split(".")[0] != "evasync":
                return node
            if node.module != "evasync":
                raise ImportError(f"{filename}:{node.lineno}: 'from {node.module} import' has "
                                  "no Evennia equivalent; howtos import from evasync only")
            by_home: dict[str, list[ast.alias]] = {}
            for alias in node.names:
                home = EVENNIA_HOMES.get(alias.name)
                if home is None:
                    dropped.append(alias.name)
                else:
                    by_home.setdefault(home, []).append(alias)
            imports: list[ast.stmt] = [ast.ImportFrom(module=home, names=names, level=0)
                                       for home, names in by_home.items()]
            for new in imports:
                ast.copy_location(new, node)
            return imports or ast.copy_location(ast.Pass(), node)

    tree = ast.fix_missing_locations(Rewriter().visit(tree))
    return tree, dropped


class _PortingLoader(importlib.machinery.SourceFileLoader):
    dropped: dict[str, list[str]] = {}

    def get_code(self, fullname: str):  # never a cached .pyc: it holds the unported code
        path = self.get_filename(fullname)
        tree, dropped = port_imports(self.get_data(path), path)
        if dropped:
            self.dropped[fullname] = dropped
        return compile(tree, path, "exec", dont_inherit=True)


class _PortingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, repo: str) -> None:
        self.repo = repo

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] != PORTED_PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path or [self.repo])
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return spec
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=_PortingLoader(fullname, spec.origin),
            submodule_search_locations=spec.submodule_search_locations)


def _boot(template: str, repo: str, workdir: str) -> None:
    """Copy the game into ``workdir`` and start Django and Evennia on it, in this process."""
    game = os.path.join(workdir, "game")
    shutil.copytree(template, game, ignore=shutil.ignore_patterns("__pycache__", "logs"))
    os.makedirs(os.path.join(game, "server", "logs"), exist_ok=True)
    os.chdir(game)
    sys.path.insert(0, game)
    sys.meta_path.insert(0, _PortingFinder(repo))
    sys.dont_write_bytecode = True
    os.environ["DJANGO_SETTINGS_MODULE"] = "server.conf.settings"
    os.environ["TEST_DB_PATH"] = os.path.join(game, "server", "evennia.db3")
    import django

    django.setup()
    import evennia

    evennia._init()


class _Log:
    """Errors and warnings Evennia logs (the messages sent with a mismatch)."""

    def __init__(self) -> None:
        from twisted.logger import LogLevel, formatEvent, globalLogBeginner

        self._formatEvent = formatEvent
        self._warn = LogLevel.warn
        self.lines: list[str] = []
        globalLogBeginner.beginLoggingTo([self], redirectStandardIO=False)

    def __call__(self, event: dict) -> None:
        level = event.get("log_level")
        if level is None or level < self._warn:
            return
        text = self._formatEvent(event) or ""
        failure = event.get("log_failure")
        if failure is not None:
            text += "\n" + failure.getTraceback()
        self.lines.extend(text.splitlines())
        print(text, file=sys.stderr, flush=True)


class Game:
    """One Evennia game: its task handler on a virtual clock, and players' screens."""

    def __init__(self) -> None:
        from evennia import DefaultRoom, create_object
        from evennia.objects.objects import DefaultObject
        from evennia.scripts import taskhandler
        from twisted.internet import reactor

        self.reactor = reactor
        self.tasks = taskhandler.TASK_HANDLER
        self.log = _Log()
        self.screen: list[tuple[str, str]] = []
        self.watching: dict[int, str] = {}
        self._new_clock()

        game = self

        class ClockDatetime(datetime):
            @classmethod
            def now(cls, tz=None):
                return datetime.fromtimestamp(game.tasks.clock.seconds(), tz)

        taskhandler.datetime = ClockDatetime
        self.room = create_object(DefaultRoom, key="Transcript room", nohome=True)
        original_msg = DefaultObject.msg

        def msg(obj, text=None, *args, **kwargs):
            who = game.watching.get(obj.id)
            if who is not None and text is not None:
                game.show(who, text)
            return original_msg(obj, text, *args, **kwargs)

        DefaultObject.msg = msg

    def _new_clock(self) -> None:
        from twisted.internet.task import Clock

        clock = Clock()
        # Timestamps like a live server's, in whole seconds so that the difference of two of
        # them after whole virtual seconds is exact (as on evasync's virtual clock).
        clock.advance(int(time.time()))
        self.tasks.clock = clock

    def show(self, who: str, text) -> None:
        from evennia.utils.ansi import strip_ansi

        if isinstance(text, (tuple, list)):
            text = text[0] if text else ""
        text = strip_ansi(str(text))
        for line in text.splitlines() or [""]:
            self.screen.append((who, line))

    def settle(self) -> None:
        """Run what is due on the real reactor (Evennia's next-turn calls), and collect
        garbage so a failure nobody handled is logged now, at the step that caused it."""
        for _ in range(1000):
            now = self.reactor.seconds()
            if not any(call.getTime() <= now for call in self.reactor.getDelayedCalls()):
                break
            self.reactor.runUntilCurrent()
        gc.collect()

    def advance(self, seconds: float) -> None:
        """Let virtual time pass; a call scheduled by another fires at its own time."""
        clock = self.tasks.clock
        target = clock.seconds() + seconds
        while True:
            due = min((call.getTime() for call in clock.getDelayedCalls()), default=None)
            if due is None or due > target:
                break
            clock.advance(max(0.0, due - clock.seconds()))
            self.settle()
        clock.advance(target - clock.seconds())
        self.settle()

    def reload(self, ids: dict[str, int]) -> dict[str, object]:
        """What a server reload does to the game process (see the module docstring)."""
        from evennia.objects.models import ObjectDB

        self.tasks.clear(save=False)
        ObjectDB.flush_instance_cache(force=True)
        gc.collect()
        self.tasks.load()
        self.tasks.create_delays()
        return {name: ObjectDB.objects.get(id=obj_id) for name, obj_id in ids.items()}

    def play(self, request: dict) -> dict:
        from django.conf import settings
        from evennia import create_object

        self.tasks.clear()
        self._new_clock()
        self.log.lines.clear()
        for path in request["cmdsets"]:
            module, _, name = path.rpartition(".")
            getattr(importlib.import_module(module), name)  # fail here, not in Evennia's log
        typeclass = request["typeclass"] or settings.BASE_CHARACTER_TYPECLASS
        characters = {}
        for name in request["players"]:
            character = create_object(typeclass, key=name, location=self.room, home=self.room)
            for path in request["cmdsets"]:
                character.cmdset.add(path, persistent=True)
            characters[name] = character
        ids = {name: obj.id for name, obj in characters.items()}
        self.watching = {obj_id: name for name, obj_id in ids.items()}
        self.settle()
        self.screen.clear()
        seen = []
        try:
            for step in request["steps"]:
                if step["kind"] == "input":
                    characters[step["player"]].execute_cmd(step["text"])
                    self.settle()
                elif step["kind"] == "wait":
                    self.advance(step["seconds"])
                elif step["kind"] == "reload":
                    characters = self.reload(ids)
                else:
                    raise ValueError(f"unknown step {step!r}")
                seen.append(list(self.screen))
                self.screen.clear()
        finally:
            self.tasks.clear()
            self.watching = {}
            for character in characters.values():
                character.delete()
        log = list(self.log.lines)
        played = {path.rpartition(".")[0] for path in request["cmdsets"]}
        for module, names in _PortingLoader.dropped.items():
            if module in played:
                log.append(f"(ported {module} without {', '.join(names)}: not in Evennia)")
        return {"seen": seen, "log": log}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    template, repo = (os.path.abspath(path) for path in argv[1:])
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever Evennia prints must not get into the answers
    workdir = tempfile.mkdtemp(prefix="evasync-evennia-")
    try:
        _boot(template, repo, workdir)
        game = Game()
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                answer = game.play(json.loads(line))
            except Exception:
                answer = {"error": traceback.format_exc()}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
