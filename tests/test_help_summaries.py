"""What ``help`` lists for each command of the howtos and the demo server reads as a whole sentence.

``help`` shows the first line of a command's docstring as its summary; a summary whose sentence
goes on into the next line would be cut off mid-sentence in the listing (and in transcripts).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import howtos
from evasync import Command

MODULES = sorted(f"howtos.{info.name}" for info in pkgutil.iter_modules(howtos.__path__)
                 if not info.name.startswith("_")) + ["evasync.server.commands",
                                                     "evasync.commands"]


def _commands() -> list[type[Command]]:
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        found += [cls for cls in vars(module).values()
                  if inspect.isclass(cls) and issubclass(cls, Command)
                  and cls.__module__ == name and cls.key]
    return found


COMMANDS = _commands()


def test_the_howtos_and_the_server_have_commands_to_check():
    keys = {cls.key for cls in COMMANDS}
    assert {"wait", "order", "toll", "sell", "quicksell", "chart", "forge", "py", "help"} <= keys


@pytest.mark.parametrize("command", COMMANDS, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_the_help_summary_is_one_whole_sentence_on_its_line(command):
    lines = command.get_help().splitlines()
    summary = lines[0]
    assert summary.endswith((".", ")", "!", "?")), f"{summary!r} does not end a sentence"
    assert len(lines) == 1 or not lines[1].strip(), (
        f"the summary {summary!r} goes on into the next line: {lines[1].strip()!r}")
