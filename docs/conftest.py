"""Sybil: every Python block in docs/ runs, each page in its own virtual-time runtime."""

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser

from evasync.testing import VirtualRuntime


def _setup(namespace):
    namespace["runtime"] = VirtualRuntime()


def _teardown(namespace):
    namespace["runtime"].close()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md", "**/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
