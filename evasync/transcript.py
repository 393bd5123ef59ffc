"""Game transcripts: a play session written down, and run to prove it.

A transcript is what players type and see, with time passing in between:

.. transcript::
   :cmdset: howtos.command_duration.CommandDurationCmdSet

   > craft fine sword
   You start crafting fine sword.
   ... 10 seconds pass ...
   You shape the main part of fine sword.
   ... the server reloads ...

Lines starting with ``>`` are typed by the player; ``Name> ...`` is typed by player *Name*
(several players in one transcript), whose output lines are then written ``[Name] text``.
``... N seconds pass ...`` (or ``minutes``) lets virtual time pass; ``... the server reloads ...``
reloads the runtime. Every other line is output that must appear, in that order.

:func:`run` plays a transcript on fresh characters and returns what really happened, written the
same way; :func:`check` compares the two. :class:`TranscriptParser` makes Sybil do that for every
``{transcript}`` directive block of a MyST page (and every ``.. transcript::`` directive of a
reST text, such as this docstring, which the test suite plays too).

Who plays it is a *player*: :func:`play_on_evasync` (the default) uses a fresh
:class:`~evasync.testing.VirtualRuntime`; a :class:`ProcessPlayer` hands the steps to another
process, such as a real Evennia game, and gets back what its players saw. The transcript is read
and the outcome compared here either way, so one transcript is proof on both.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import select
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from .testing import VirtualRuntime

DEFAULT_PLAYER = "Player"

_INPUT = re.compile(r"^(?P<player>[A-Za-z][\w-]*)?> ?(?P<line>.*)$")
_WAIT = re.compile(r"^\.\.\. (?P<amount>\d+(?:\.\d+)?) (?P<unit>second|minute)s? pass(?:es)? \.\.\.$")
_RELOAD = re.compile(r"^\.\.\. the server reloads \.\.\.$")
_PREFIXED = re.compile(r"^\[(?P<player>[^\]]+)\] (?P<text>.*)$")


class TranscriptError(AssertionError):
    """A transcript did not play out as written (the message holds a diff), or is malformed."""


@dataclass(frozen=True)
class Step:
    """One line of a transcript, as :func:`parse` reads it.

    Attributes:
        kind: ``"input"`` (a typed line), ``"wait"`` (time passes), ``"reload"`` (the server
            reloads) or ``"output"`` (a line that must appear).
        text: The typed line without its prompt, for input; the whole line otherwise.
        player: Who types an input line (``"Player"`` unless the line names someone).
        seconds: How long a wait lasts; 0 for the other kinds.
    """

    kind: str
    text: str
    player: str = DEFAULT_PLAYER
    seconds: float = 0.0


def parse(text: str) -> list[Step]:
    """Read a transcript into steps (output lines included, for the comparison)."""
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip()
        if not line:
            continue
        if (wait := _WAIT.match(line)):
            factor = 60 if wait["unit"] == "minute" else 1
            steps.append(Step("wait", line, seconds=float(wait["amount"]) * factor))
        elif _RELOAD.match(line):
            steps.append(Step("reload", line))
        elif (typed := _INPUT.match(line)):
            steps.append(Step("input", typed["line"], player=typed["player"] or DEFAULT_PLAYER))
        else:
            steps.append(Step("output", line))
    return steps


class _Screen:
    """Everything every player saw, in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def session(self, player: str) -> "_PlayerSession":
        return _PlayerSession(self, player)


class _PlayerSession:
    def __init__(self, screen: _Screen, player: str) -> None:
        self.screen = screen
        self.player = player

    def send(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.screen.lines.append((self.player, line))


#: What each player saw after one step: ``(player, line)`` pairs, in order.
Seen = list[tuple[str, str]]

#: A transcript player: ``player(steps, players, cmdsets, typeclass)`` plays the steps that are
#: not output lines (in order) and returns, for each of them, what was seen right after it.
Player = Callable[[Sequence[Step], Sequence[str], Sequence["str | type"], "str | type | None"],
                  list[Seen]]


def play_on_evasync(steps: Sequence[Step], players: Sequence[str],
                    cmdsets: Sequence[str | type], typeclass: str | type | None = None
                    ) -> list[Seen]:
    """The default player: a fresh :class:`~evasync.testing.VirtualRuntime`.

    Each player is a fresh character (``typeclass``, default :class:`~evasync.DefaultCharacter`)
    with ``cmdsets`` added persistently, so they are back after a reload as a game's would be.
    """
    screen = _Screen()
    seen: list[Seen] = []
    with VirtualRuntime() as runtime:
        ids: dict[str, int] = {}
        for name in players:
            character = runtime.objects.create(typeclass, key=name)
            for cmdset in cmdsets:  # classes or import paths
                character.cmdset.add(cmdset, persistent=True)
            character.sessions.append(screen.session(name))
            ids[name] = character.id
        for step in steps:
            if step.kind == "input":
                runtime.objects.get(ids[step.player]).execute_cmd(step.text)
            elif step.kind == "wait":
                runtime.advance(step.seconds)
            elif step.kind == "reload":
                runtime.reload()
                for name, obj_id in ids.items():
                    runtime.objects.get(obj_id).sessions.append(screen.session(name))
            seen.append(list(screen.lines))
            screen.lines.clear()
    return seen


def run(text: str, cmdsets: Sequence[str | type], typeclass: str | type | None = None,
        player: Player | None = None) -> str:
    """Play transcript ``text`` and return what really happened, in transcript form.

    Each player named in the transcript is a fresh character with ``cmdsets`` (classes or import
    paths) added; ``player`` plays it (default :func:`play_on_evasync`).
    """
    steps = [step for step in parse(text) if step.kind != "output"]
    players = list(dict.fromkeys(s.player for s in steps if s.kind == "input"))
    several = len(players) > 1
    played = (player or play_on_evasync)(steps, players, list(cmdsets), typeclass)
    if len(played) != len(steps):
        raise TranscriptError(f"the player answered for {len(played)} steps, not {len(steps)}")
    out: list[str] = []
    for step, seen in zip(steps, played):
        if step.kind == "input":
            out.append(f"{step.player}> {step.text}" if several else f"> {step.text}")
        else:
            out.append(step.text)
        out.extend(f"[{who}] {line}" if several else line for who, line in seen)
    return "\n".join(out)


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def check(text: str, cmdsets: Sequence[str | type], typeclass: str | type | None = None,
          player: Player | None = None) -> None:
    """Play ``text`` (see :func:`run`) and raise :class:`TranscriptError` with a diff if it
    does not match."""
    expected = _normalise(text)
    actual = _normalise(run(text, cmdsets, typeclass, player))
    if expected != actual:
        where = f"as played on {player.name}" if isinstance(player, ProcessPlayer) else "as played"
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                              "as written", where, lineterm=""))
        message = f"the transcript did not play out as written:\n{diff}"
        log = player.last_log if isinstance(player, ProcessPlayer) else []
        if log:
            message += f"\n{player.name} logged:\n" + "\n".join(log)
        raise TranscriptError(message)


def _class_path(cmdset: str | type) -> str:
    return cmdset if isinstance(cmdset, str) else f"{cmdset.__module__}.{cmdset.__qualname__}"


class ProcessPlayer:
    """A player in another process, for instance a real Evennia game (see the test suite).

    The process is started with ``argv`` on first use and plays one transcript after another.
    For each, it reads one JSON line on its standard input: an object with ``players`` (names),
    ``cmdsets`` (import paths), ``typeclass`` (an import path or null) and ``steps`` (each a
    :class:`Step`'s fields, the output lines left out), and answers one JSON line on its
    standard output:
    ``{"seen": [[[player, line], ...] for each step], "log": [errors it logged]}``, or
    ``{"error": "what went wrong"}``. Its standard error goes to a temporary file, quoted when
    it fails. Closing its standard input asks it to exit.

    Args:
        argv: The command that starts it.
        name: Who plays, for messages ("evennia").
        startup_timeout: Seconds it may take to start and play the first transcript.
        timeout: Seconds it may take for each later transcript.
    """

    def __init__(self, argv: Sequence[str], name: str, startup_timeout: float = 300.0,
                 timeout: float = 120.0) -> None:
        self.argv = list(argv)
        self.name = name
        self.startup_timeout = startup_timeout
        self.timeout = timeout
        #: The errors the process logged while playing the last transcript.
        self.last_log: list[str] = []
        self._process: subprocess.Popen | None = None
        self._stderr: Any = None
        self._buffer = b""
        self._started = False

    def __call__(self, steps: Sequence[Step], players: Sequence[str],
                 cmdsets: Sequence[str | type], typeclass: str | type | None = None
                 ) -> list[Seen]:
        request = {"players": list(players), "cmdsets": [_class_path(c) for c in cmdsets],
                   "typeclass": None if typeclass is None else _class_path(typeclass),
                   "steps": [asdict(step) for step in steps]}
        timeout = self.timeout if self._started else self.startup_timeout
        process = self._start()
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
        except OSError:
            raise TranscriptError(self._died("could not be sent the transcript")) from None
        answer = json.loads(self._read_line(time.monotonic() + timeout))
        self._started = True
        self.last_log = list(answer.get("log", []))
        if "error" in answer:
            raise TranscriptError(f"{self.name} could not play the transcript:\n{answer['error']}")
        return [[(who, line) for who, line in seen] for seen in answer["seen"]]

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            if self._process is not None:
                raise TranscriptError(self._died("has exited"))
            self._stderr = tempfile.TemporaryFile()
            try:
                self._process = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, stderr=self._stderr)
            except OSError as exc:
                raise TranscriptError(f"could not start the {self.name} player "
                                      f"{self.argv}: {exc}") from None
        return self._process

    def _read_line(self, deadline: float) -> bytes:
        process = self._process
        assert process is not None and process.stdout is not None
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                message = self._died("did not answer in time")
                self.close(wait=0)
                raise TranscriptError(message)
            ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    raise TranscriptError(self._died("has exited"))
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _died(self, what: str) -> str:
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-4000:]
        return f"the {self.name} player {' '.join(self.argv)} {what}; its last words:\n{tail}"

    def close(self, wait: float = 30.0) -> None:
        """Ask the process to exit, and end it if it has not within ``wait`` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=wait)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        finally:
            process.stdout.close()


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


#: The flag option of a ``{transcript}`` block that uses what only evasync has.
EVASYNC_ONLY = "evasync-only"


class TranscriptParser:
    """Sybil parser for transcript blocks; each one is played by :func:`check`.

    It finds MyST ``{transcript}`` blocks (Markdown pages) and reST ``.. transcript::``
    directives (docstrings). Options: ``:cmdset:`` (comma-separated import paths, required),
    ``:typeclass:``, and the flag ``:evasync-only:`` for a block that shows what only evasync
    does.

    Args:
        player: Who plays the blocks (default :func:`play_on_evasync`). With another player,
            such as a :class:`ProcessPlayer` running Evennia, the blocks marked
            ``:evasync-only:`` are left out: every other block is portable, and proven so.

    Attributes:
        player: The player given (None for the default).
    """

    def __init__(self, player: Player | None = None) -> None:
        from sybil.parsers.abstract.lexers import LexerCollection
        from sybil.parsers.myst.lexers import DirectiveLexer as MystDirectiveLexer
        from sybil.parsers.rest.lexers import DirectiveLexer as RestDirectiveLexer

        self._lexer = LexerCollection([MystDirectiveLexer(directive="transcript"),
                                       RestDirectiveLexer(directive="transcript")])
        self.player = player

    def __call__(self, document: Any) -> Iterable[Any]:
        for region in self._lexer(document):
            options = region.lexemes.get("options") or {}
            if not options.get("cmdset"):
                raise TranscriptError(f"{document.path}: a transcript block needs a :cmdset: "
                                      "option naming the command set(s) it plays")
            if self.player is not None and EVASYNC_ONLY in options:
                continue
            region.parsed = (str(region.lexemes["source"]), _split(options["cmdset"]),
                             options.get("typeclass"))
            region.evaluator = self.evaluate
            yield region

    def evaluate(self, example: Any) -> None:
        """Play one block found by this parser (Sybil calls it): :func:`check` with the block's
        text, command sets, typeclass and :attr:`player`."""
        text, cmdsets, typeclass = example.parsed
        check(text, cmdsets, typeclass, self.player)
