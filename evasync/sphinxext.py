"""Sphinx extension: render ``{transcript}`` blocks as highlighted console sessions.

Enable it with ``extensions = ["evasync.sphinxext"]``. The ``transcript`` Pygments lexer shows
typed lines as prompts, time passing and reloads as comments, and ``[Name]`` prefixes as names.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from pygments.lexer import RegexLexer, bygroups
from pygments.token import Comment, Generic, Name, Text


class TranscriptLexer(RegexLexer):
    """Pygments lexer for game transcripts (see :mod:`evasync.transcript`)."""

    name = "Game transcript"
    aliases = ["transcript"]
    tokens = {
        "root": [
            (r"^([A-Za-z][\w-]*)?(> ?)(.*\n)", bygroups(Name.Label, Generic.Prompt, Generic.Strong)),
            (r"^\.\.\. (?:[\d.]+ (?:second|minute)s? pass(?:es)?|the server reloads) \.\.\.\n",
             Comment),
            (r"^(\[[^\]\n]+\] )(.*\n)", bygroups(Name.Label, Generic.Output)),
            (r"^.*\n", Generic.Output),
            (r".+", Text),
        ],
    }


class TranscriptDirective(Directive):
    """``{transcript}``: a play session, rendered as a console block (and run by Sybil).

    The flag ``:evasync-only:`` marks a session that shows what only evasync does; its caption
    says so. Every other session is portable: the suite plays it on Evennia too.
    """

    has_content = True
    option_spec = {"cmdset": directives.unchanged_required, "typeclass": directives.unchanged,
                   "caption": directives.unchanged, "evasync-only": directives.flag}

    def run(self) -> list[nodes.Node]:
        text = "\n".join(self.content)
        block = nodes.literal_block(text, text, language="transcript", classes=["transcript"])
        # Kept on the node (not rendered) for tools that play the transcripts of a built page.
        block["cmdset"] = self.options.get("cmdset", "")
        block["typeclass"] = self.options.get("typeclass", "")
        caption = self.options.get("caption")
        if "evasync-only" in self.options:
            caption = f"evasync only: {caption}" if caption else "evasync only"
        if not caption:
            return [block]
        container = nodes.container("", literal_block=True, classes=["literal-block-wrapper"])
        container += nodes.caption(caption, caption)
        container += block
        return [container]


def setup(app: Any) -> dict[str, Any]:
    app.add_lexer("transcript", TranscriptLexer)
    app.add_directive("transcript", TranscriptDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
