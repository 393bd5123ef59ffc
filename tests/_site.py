"""The built site, read back: every code block of every page, as a reader's copy button sees it.

:func:`build` runs ``sphinx-build`` as ``make html`` does (warnings are errors), keeping the
doctrees. A page's blocks come from both: the HTML says which ``<pre>`` has a copy button and
what it copies, the doctree says where the block comes from (file and line), its language,
caption and, for transcripts, the command sets they play. The two are paired in page order and
must agree on every block's text.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import bs4
from docutils import nodes

from ._copybutton import CopyButtonConfig, filter_text, format_copy_text, read_config

ROOT = Path(__file__).resolve().parent.parent
PYTHON_LANGUAGES = {None, "default", "python", "python3", "py", "py3", "pycon", "pycon3"}


def build(out: Path) -> "Site":
    html, doctrees = out / "html", out / "doctrees"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-c", str(ROOT),
         "-d", str(doctrees), str(ROOT / "docs"), str(html)],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout}\n{done.stderr}"
    return Site(html, doctrees)


@dataclass
class Block:
    """One code block of a page."""

    page: str            # docname, e.g. "howtos/questions"
    index: int           # position on the page, from 0
    where: str           # source file and line, relative to the repository
    language: str | None
    shown: str           # the text on the page
    copied: str | None   # what the copy button copies; None: the block has no copy button
    caption: str
    classes: list[str]
    included_from: str | None  # the file a literalinclude shows
    node: nodes.Element

    @property
    def is_python(self) -> bool:
        return self.language in PYTHON_LANGUAGES

    @property
    def is_session(self) -> bool:
        """A Python prompt session (as Sphinx decides: the text starts with ``>>>``)."""
        return self.is_python and self.shown.startswith(">>>")

    @property
    def is_fragment(self) -> bool:
        """Marked on the page as a piece that does not run on its own."""
        return "fragment" in self.classes or self.caption.lower().startswith("fragment")


def _relative(source: str) -> str:
    path, sep, rest = source.partition(":")
    try:
        return str(Path(path).resolve().relative_to(ROOT)) + sep + rest
    except ValueError:
        return source


def _caption(node: nodes.Element) -> str:
    parent = node.parent
    if isinstance(parent, nodes.container) and parent.get("literal_block"):
        return " ".join(c.astext() for c in parent.children if isinstance(c, nodes.caption))
    return ""


class Site:
    def __init__(self, html: Path, doctrees: Path) -> None:
        self.html = html
        self.doctrees = doctrees

    @cached_property
    def config(self) -> CopyButtonConfig:
        return read_config()

    def docnames(self) -> list[str]:
        return sorted(str(p.relative_to(self.doctrees).with_suffix(""))
                      for p in self.doctrees.rglob("*.doctree"))

    def html_path(self, docname: str) -> Path:
        return self.html / f"{docname}.html"

    def soup(self, path: Path) -> bs4.BeautifulSoup:
        return bs4.BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")

    def copy_targets(self, soup: bs4.BeautifulSoup) -> list[bs4.Tag]:
        """The ``<pre>`` elements that get a copy button, in page order."""
        return soup.select(self.config.selector)

    def blocks(self, docname: str) -> list[Block]:
        doctree = pickle.loads((self.doctrees / f"{docname}.doctree").read_bytes())
        code_nodes = [n for n in doctree.findall(
            lambda n: isinstance(n, (nodes.literal_block, nodes.doctest_block)))
            if n.rawsource == n.astext() or isinstance(n, nodes.doctest_block)]
        soup = self.soup(self.html_path(docname))
        pres = soup.select("div.highlight > pre")
        with_button = {id(pre) for pre in self.copy_targets(soup)}
        assert len(pres) == len(code_nodes), (
            f"{docname}: {len(pres)} highlighted blocks in the HTML, {len(code_nodes)} in the "
            "doctree; cannot tell which is which")
        blocks = []
        for index, (node, pre) in enumerate(zip(code_nodes, pres)):
            shown = node.astext()
            rendered = pre.get_text()
            assert rendered.strip("\n") == shown.strip("\n"), (
                f"{docname}: block {index} reads differently in the HTML:\n{rendered}\n---\n{shown}")
            copied = None
            if id(pre) in with_button:
                copied = format_copy_text(filter_text(pre, self.config.exclude), self.config)
            language = node.get("language") or None
            if isinstance(node, nodes.doctest_block):
                language = "pycon"
            blocks.append(Block(
                page=docname, index=index,
                where=f"{_relative(node.source or docname)}:{node.line}",
                language=language, shown=shown, copied=copied, caption=_caption(node),
                classes=list(node.get("classes", [])),
                included_from=node.get("source") if isinstance(node.get("source"), str) else None,
                node=node))
        return blocks

    def pages_without_doctree(self) -> list[Path]:
        """Generated pages (index, search, highlighted module sources)."""
        documented = {self.html_path(name) for name in self.docnames()}
        return sorted(p for p in self.html.rglob("*.html") if p not in documented)
