"""Sybil: every code block and transcript in docs/ runs; any block nothing runs is a failure.

Each page runs in its own namespace with nothing handed in: a page that uses a runtime makes it
in a block the reader sees (``runtime = VirtualRuntime()``), and every runtime a page made is
closed after its last block. Transcript blocks are played by
:class:`evasync.transcript.TranscriptParser`, twice: on evasync, and (all but those marked
``:evasync-only:``) on a real Evennia game in ``.venv-evennia`` (made by ``make test``; see
``tests/evennia/player.py``), as the tests named ``sybil:evennia,...``. Shell blocks (``console``)
are checked against the project: each ``make`` target must exist in the Makefile and each
``python -m`` module must import. Any other fenced block fails unless a ``% skip: next "reason"``
comment stands before it.
"""

import doctest
import importlib.util
import pathlib
import re
import shlex
import subprocess
import sys

from sybil import Sybil
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

from evasync.testing import VirtualRuntime
from evasync.transcript import ProcessPlayer, TranscriptParser

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The example game is a project of its own: tests/test_own_game.py installs it in a fresh
# virtual environment and runs its tests and pages there, with its own conftest.py.
collect_ignore = ["examples"]
EVENNIA_VENV = ROOT / ".venv-evennia"
EVENNIA = ProcessPlayer([str(EVENNIA_VENV / "bin" / "python"),
                         str(ROOT / "tests" / "evennia" / "player.py"),
                         str(EVENNIA_VENV / "game"), str(ROOT)], name="Evennia")
RUN_LANGUAGES = {"python", "console", "{transcript}"}
CODE_DIRECTIVE = re.compile(r"^\{(?:code|code-block|sourcecode)\}\s*")


def _close_runtimes(namespace):
    for value in list(namespace.values()):
        if isinstance(value, VirtualRuntime):
            value.close()


def _make_targets():
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w-]+):", text, re.MULTILINE))


class ConsoleParser:
    """```console blocks: each ``$ command`` must be a real make target, an importable module
    (``python -m``) or an existing ``evasync`` subcommand with existing options."""

    def __init__(self):
        self._lexer = RawFencedCodeBlockLexer(
            info_pattern=re.compile(r"console$\n", re.MULTILINE))

    def __call__(self, document):
        for region in self._lexer(document):
            region.parsed = str(region.lexemes["source"])
            region.evaluator = self.evaluate
            yield region

    @staticmethod
    def evaluate(example):
        commands = [line[2:].split("#")[0].strip() for line in example.parsed.splitlines()
                    if line.startswith("$ ")]
        assert commands, "a console block shows no '$ command' line"
        targets = _make_targets()
        for command in commands:
            words = shlex.split(command)
            if words[0] == "make":
                missing = [w for w in words[1:] if "=" not in w and w not in targets]
                assert not missing, f"{command!r}: no such Makefile target {missing}"
            elif "-m" in words:
                module = words[words.index("-m") + 1]
                assert importlib.util.find_spec(module), f"{command!r}: {module} does not import"
            elif pathlib.PurePath(words[0]).name == "evasync":
                _check_cli(command, words[1:])
            else:
                raise AssertionError(f"{command!r}: don't know how to check this command; show "
                                     "a make target or a python -m command")


def _check_cli(command, args):
    """The ``evasync`` subcommand and every ``--option`` shown must exist (per its --help)."""
    assert args, f"{command!r}: no subcommand"
    shown = subprocess.run([sys.executable, "-m", "evasync", args[0], "--help"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, f"{command!r}: no such subcommand ({shown.stderr.strip()})"
    unknown = [a.split("=")[0] for a in args[1:]
               if a.startswith("--") and a.split("=")[0] not in shown.stdout]
    assert not unknown, f"{command!r}: unknown option(s) {unknown}"


class UnrunBlockParser:
    """Every fenced block no other parser runs becomes a failing example, so none slips by."""

    def __init__(self):
        self._lexer = RawFencedCodeBlockLexer(
            info_pattern=re.compile(r"(?P<info>[^\n]*)$\n", re.MULTILINE))

    def __call__(self, document):
        for region in self._lexer(document):
            info = region.lexemes["info"].strip()
            language = CODE_DIRECTIVE.sub("", info)
            if language in RUN_LANGUAGES or (language.startswith("{") and language == info):
                continue  # run by another parser, or a directive such as {note} or {toctree}
            region.parsed = info or "(no language)"
            region.evaluator = self.evaluate
            yield region

    @staticmethod
    def evaluate(example):
        raise AssertionError(
            f"code block ({example.parsed}) is not run by any test: make it a python, console "
            "or {transcript} block, or put '% skip: next \"why it cannot run\"' before it")


def pytest_sessionfinish(session):
    EVENNIA.close()


pytest_collect_file = (Sybil(
    parsers=[PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS), TranscriptParser(),
             ConsoleParser(), UnrunBlockParser(), SkipParser()],
    patterns=["*.md", "**/*.md"],
    teardown=_close_runtimes,
) + Sybil(
    parsers=[TranscriptParser(player=EVENNIA)],
    patterns=["*.md", "**/*.md"],
    name="evennia",
)).pytest()
