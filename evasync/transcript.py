"""Game transcripts: a play session written down, and run to prove it.

A transcript is what players type and see, with time passing in between::

    > craft fine sword
    You start crafting fine sword.
    ... 10 seconds pass ...
    You shape the main part of fine sword.
    ... the server reloads ...

Lines starting with ``>`` are typed by the player; ``Name> ...`` is typed by player *Name*
(several players in one transcript), whose output lines are then written ``[Name] text``.
``... N seconds pass ...`` (or ``minutes``) lets virtual time pass; ``... the server reloads ...``
reloads the runtime. Every other line is output that must appear, in that order.

:func:`run` plays a transcript on fresh characters in a fresh
:class:`~evasync.testing.VirtualRuntime` and returns what really happened, written the same way;
:func:`check` compares the two. :class:`TranscriptParser` makes Sybil do that for every
``{transcript}`` directive block of a MyST page.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

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
    """One line of a transcript: ``kind`` is "input", "wait", "reload" or "output"."""

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


def run(text: str, cmdsets: Sequence[str | type], typeclass: str | type | None = None) -> str:
    """Play transcript ``text`` and return what really happened, in transcript form.

    Each player named in the transcript is a fresh character (``typeclass``, default
    :class:`~evasync.DefaultCharacter`) with ``cmdsets`` added, in a fresh virtual-time runtime.
    """
    steps = parse(text)
    players = list(dict.fromkeys(s.player for s in steps if s.kind == "input"))
    several = len(players) > 1
    screen = _Screen()
    out: list[str] = []

    def flush() -> None:
        for player, line in screen.lines:
            out.append(f"[{player}] {line}" if several else line)
        screen.lines.clear()

    with VirtualRuntime() as runtime:
        ids: dict[str, int] = {}
        for name in players:
            character = runtime.objects.create(typeclass, key=name)
            for cmdset in cmdsets:  # classes or import paths
                character.cmdset.add(cmdset, persistent=True)
            character.sessions.append(screen.session(name))
            ids[name] = character.id
        for step in steps:
            if step.kind == "output":
                continue
            if step.kind == "input":
                out.append(f"{step.player}> {step.text}" if several else f"> {step.text}")
                runtime.objects.get(ids[step.player]).execute_cmd(step.text)
            elif step.kind == "wait":
                out.append(step.text)
                runtime.advance(step.seconds)
            else:
                out.append(step.text)
                runtime.reload()
                for name, obj_id in ids.items():
                    runtime.objects.get(obj_id).sessions.append(screen.session(name))
            flush()
    return "\n".join(out)


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def check(text: str, cmdsets: Sequence[str | type], typeclass: str | type | None = None) -> None:
    """Play ``text`` and raise :class:`TranscriptError` with a diff if it does not match."""
    expected = _normalise(text)
    actual = _normalise(run(text, cmdsets, typeclass))
    if expected != actual:
        diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                              "as written", "as played", lineterm=""))
        raise TranscriptError(f"the transcript did not play out as written:\n{diff}")


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class TranscriptParser:
    """Sybil parser for MyST ``{transcript}`` blocks; each one is played by :func:`check`.

    Options: ``:cmdset:`` (comma-separated import paths, required) and ``:typeclass:``.
    """

    def __init__(self) -> None:
        from sybil.parsers.myst.lexers import DirectiveLexer

        self._lexer = DirectiveLexer(directive="transcript")

    def __call__(self, document: Any) -> Iterable[Any]:
        for region in self._lexer(document):
            options = region.lexemes.get("options") or {}
            if not options.get("cmdset"):
                raise TranscriptError(f"{document.path}: a transcript block needs a :cmdset: "
                                      "option naming the command set(s) it plays")
            region.parsed = (str(region.lexemes["source"]), _split(options["cmdset"]),
                             options.get("typeclass"))
            region.evaluator = self.evaluate
            yield region

    @staticmethod
    def evaluate(example: Any) -> None:
        text, cmdsets, typeclass = example.parsed
        check(text, cmdsets, typeclass)
