"""Sybil: the examples and transcripts in evasync's docstrings run, as the pages' do.

``make doctest`` (and ``make test``) collect this. Python code blocks and ``>>>`` examples run
with nothing but their own imports (the module's names are not handed in: a reader copying an
example from the reference has only what it shows); ``.. transcript::`` directives are played
by :class:`evasync.transcript.TranscriptParser`. A literal block (``::``) or a code block in any
other language fails: nothing shown in a docstring goes unrun.
"""

import doctest
import re

from sybil import Document, Sybil
from sybil.document import PythonDocStringDocument
from sybil.parsers.abstract.lexers import BlockLexer
from sybil.parsers.rest import CodeBlockParser, DocTestParser
from sybil.parsers.rest.lexers import END_PATTERN_TEMPLATE, DirectiveLexer
from sybil.evaluators.python import PythonEvaluator

from evasync.testing import VirtualRuntime
from evasync.transcript import TranscriptParser


class _Docstrings(PythonDocStringDocument):
    """The docstrings of a module, without the module's own names in the namespace."""

    def __init__(self, text: str, path: str) -> None:
        Document.__init__(self, text, path)


class UnrunBlockParser:
    """Literal blocks (``text::``) and code blocks in a language nothing runs become failures."""

    def __init__(self):
        self._lexers = [
            BlockLexer(re.compile(r"^(?P<prefix>[ \t]*)(?![ \t]|\.\.)[^\n]*::[ \t]*\n",
                                  re.MULTILINE), END_PATTERN_TEMPLATE),
            DirectiveLexer(directive=r"(?:code-block|code|sourcecode)"),
        ]

    def __call__(self, document):
        for lexer in self._lexers:
            for region in lexer(document):
                if (region.lexemes.get("arguments") or "").strip() == "python":
                    continue  # run by the CodeBlockParser
                region.parsed = region.lexemes.get("arguments") or "literal block (::)"
                region.evaluator = self.evaluate
                yield region

    @staticmethod
    def evaluate(example):
        raise AssertionError(
            f"{example.parsed} in a docstring is not run by any test: make it a "
            "'.. code-block:: python', '>>>' examples or a '.. transcript::'")


def _close_runtimes(namespace):
    for value in list(namespace.values()):
        if isinstance(value, VirtualRuntime):
            value.close()


pytest_collect_file = Sybil(
    parsers=[
        CodeBlockParser(language="python", evaluator=PythonEvaluator()),
        DocTestParser(optionflags=doctest.ELLIPSIS),
        TranscriptParser(),
        UnrunBlockParser(),
    ],
    patterns=["*.py"],
    excludes=["conftest.py"],
    document_types={".py": _Docstrings},
    teardown=_close_runtimes,
).pytest()
