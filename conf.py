"""Sphinx configuration. Sources live in docs/; build with `make html`."""

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
exclude_patterns = ["_build", "**/conftest.py", "**/_*.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

intersphinx_mapping = {}

html_theme = "furo"
html_title = "evasync"
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
