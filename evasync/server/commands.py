"""The demo server's own commands: look, say, who, quit, and the superuser's py and reload.

Every character also has the howto's commands (``howtos.command_duration``) and ``help``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import traceback
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

import evasync

from ..commands import CmdSet, Command
from ..runtime import get_runtime

log = Logger(namespace="evasync.server.commands")


def current_game(command: Command) -> Any:
    """The game a command runs in: the one of the session its line came from (or of any of
    its caller's sessions); RuntimeError outside the demo server's game process."""
    for session in [command.session, *getattr(command.caller, "sessions", ())]:
        game = getattr(session, "game", None)
        if game is not None:
            return game
    raise RuntimeError(f"{command.key!r} needs the demo server's game process, and "
                       f"{command.caller!r} has no connection to one")


def _names(characters: list[Any]) -> str:
    return ", ".join(c.key for c in characters) or "nobody"


class CmdLook(Command):
    """
    Look around.

    Usage:
      look
    """

    key = "look"
    aliases = ["l"]

    def func(self) -> None:
        others = [c for c in current_game(self).characters() if c is not self.caller]
        self.msg("The Demo Room\n"
                 "A bare room for trying out commands that take time. Type 'help' to see them.\n"
                 f"Here with you: {_names(others)}.")


class CmdSay(Command):
    """
    Say something to everyone in the game.

    Usage:
      say <text>
    """

    key = "say"
    aliases = ["'", '"']

    def func(self) -> None:
        text = self.args.strip()
        if not text:
            self.msg("Say what? Usage: say <text>")
            return
        self.msg(f'You say, "{text}"')
        for other in current_game(self).characters():
            if other is not self.caller:
                other.msg(f'{self.caller.key} says, "{text}"')


class CmdWho(Command):
    """
    List who is connected.

    Usage:
      who
    """

    key = "who"

    def func(self) -> None:
        characters = current_game(self).characters()
        self.msg(f"Connected ({len(characters)}): {_names(characters)}.")


class CmdQuit(Command):
    """
    Leave the game (your character and its persistent delays stay).

    Usage:
      quit
    """

    key = "quit"
    runs_during_questions = True  # leaving must never be taken for an answer

    def func(self) -> None:
        sessions = [self.session] if self.session is not None else list(self.caller.sessions)
        for session in sessions:
            session.close("Goodbye!")


def run_code(code: str, namespace: dict[str, Any]) -> tuple[bool, Any]:
    """Run ``code`` like an interactive prompt: returns (True, value) if it ends in an expression
    (whose value that is), else (False, None). Compiled as the file ``<py>``."""
    tree = ast.parse(code, "<py>", "exec")
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
        exec(compile(tree, "<py>", "exec"), namespace)
        value = eval(compile(ast.Expression(last.value), "<py>", "eval"), namespace)
        return True, value
    exec(compile(tree, "<py>", "exec"), namespace)
    return False, None


def _traceback(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != "<py>":
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


class CmdPy(Command):
    """
    Run Python code in the game process (superuser only).

    Usage:
      py <code>

    Runs in the reactor, with `self` and `me` bound to you, `evasync`
    and `runtime` at hand. Prints what the code prints, the value of a
    final expression, or the traceback. Try:
      py from evasync import delay; delay(5, me.msg, "A raven lands on your shoulder.")
    """

    key = "py"
    aliases = ["!"]
    locks = "cmd:superuser()"

    def func(self) -> None:
        code = self.args.strip()
        if not code:
            self.msg("Usage: py <code>")
            return
        caller = self.caller
        log.info("py from {caller!r}: {code}", caller=caller, code=code)
        namespace = {"self": caller, "me": caller, "evasync": evasync, "runtime": get_runtime(),
                     "__name__": "__py__"}
        printed = io.StringIO()
        self.msg(f">>> {code}")
        try:
            with contextlib.redirect_stdout(printed):
                has_value, value = run_code(code, namespace)
        except BaseException as exc:  # SystemExit too: py must never end the game process
            output = printed.getvalue().rstrip()
            self.msg((output + "\n" if output else "") + _traceback(exc))
            return
        output = printed.getvalue().rstrip()
        if output:
            self.msg(output)
        if has_value:
            self.msg(f"<<< {value!r}")
            if isinstance(value, defer.Deferred):
                value.addBoth(self._later, caller)

    @staticmethod
    def _later(result: Any, caller: Any) -> None:
        caller.msg(f"<<< (later) {result!r}")


class CmdReload(Command):
    """
    Reload the game: restart it with the code on disk (superuser only).

    Usage:
      reload

    Everyone stays connected. Persistent delays fire at their time;
    other delays and paused commands are gone.
    """

    key = "reload"
    locks = "cmd:superuser()"
    runs_during_questions = True

    def func(self) -> None:
        log.info("reload asked by {caller!r}", caller=self.caller)
        current_game(self).request_reload()


class CharacterCmdSet(CmdSet):
    """What every character can do besides the howto's commands and ``help``."""

    key = "server"

    def at_cmdset_creation(self) -> None:
        for command in (CmdLook, CmdSay, CmdWho, CmdQuit, CmdPy, CmdReload):
            self.add(command)
