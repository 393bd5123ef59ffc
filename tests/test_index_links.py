"""The front page links every page of the site, so a reader starting there can reach each one."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_index_links_every_page():
    pages = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.md")
             if not p.name.startswith("_") and p.relative_to(DOCS).parts[0] != "examples"}
    linked = set(re.findall(r"\{doc\}`(?:[^`<]*<)?([\w/-]+)>?`", (DOCS / "index.md").read_text()))
    assert pages - {"index"} - linked == set()
