"""Sphinx configuration. Sources live in docs/; build with `make html`."""

import os

project = "evasync"
author = "the evasync developers"
copyright = "2026, the evasync developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
    "sphinx_design",
    "evasync.sphinxext",
]

source_suffix = {".md": "markdown"}
# examples/ holds whole projects, shown with literalinclude (their own pages are theirs).
exclude_patterns = ["_build", "**/conftest.py", "**/_*.md", "examples"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Python's and Twisted's names link to their docs through inventories committed in
# docs/_inventories/, so the build fetches nothing. They are cut down from the official ones by
# docs/_inventories/refresh.py, whose docstring says where those come from and how to refresh.
_INVENTORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs", "_inventories")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", os.path.join(_INVENTORIES, "python.inv")),
    "twisted": ("https://docs.twisted.org/en/stable/api/",
                os.path.join(_INVENTORIES, "twisted.inv")),
}

html_theme = "furo"
html_title = "evasync"
html_static_path = ["docs/_static"]
html_css_files = ["evasync.css"]  # code and sessions wrap on narrow screens
# The copy button copies what a reader should paste: the code of ">>> " and "... " lines of a
# Python session (without its output) and the commands of "$ " lines of a shell session. A
# line "... 10 seconds pass ..." or "... the server reloads ..." is not a prompt: it is time
# passing in a transcript written inside Python code (see evasync.transcript), and treating it
# as one would copy that single line instead of the code around it. tests/test_docs_copy.py
# runs what this copies, for every block of every page.
copybutton_prompt_text = (
    r">>> "
    r"|\.\.\. (?!\d+(?:\.\d+)? (?:second|minute)s? pass(?:es)? \.\.\.$|the server reloads \.\.\.$)"
    r"|\$ "
)
copybutton_prompt_is_regexp = True
# Transcripts show a play session; copying them as commands would make no sense.
copybutton_selector = "div:not(.transcript) > div.highlight pre"


#: autodoc writes a zope Interface in an annotation by its bare name; these are linked by full name.
_INTERFACES = {"IReactorTime": "twisted.internet.interfaces.IReactorTime"}


def _link_interfaces(app, env, node, contnode):
    from sphinx.ext import intersphinx

    if node.get("reftarget") in _INTERFACES:
        node["reftarget"] = _INTERFACES[node["reftarget"]]
        return intersphinx.missing_reference(app, env, node, contnode)
    return None


def _name_interfaces():
    """A zope Interface has no ``__qualname__``, so autodoc writes a return type naming one
    (``-> IDelayedCall``) as its repr; with one, it is written, and linked, by its full name."""
    from twisted.internet import interfaces
    from zope.interface.interface import InterfaceClass

    for value in vars(interfaces).values():
        if isinstance(value, InterfaceClass) and not hasattr(value, "__qualname__"):
            value.__qualname__ = value.__name__


def setup(app):
    _name_interfaces()
    app.connect("missing-reference", _link_interfaces)
