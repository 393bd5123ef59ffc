"""Sybil: every ``{transcript}`` block in these pages is played as a test."""

from sybil import Sybil

from evasync.transcript import TranscriptParser

pytest_collect_file = Sybil(parsers=[TranscriptParser()], patterns=["*.md"]).pytest()
