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

intersphinx_mapping = {}

html_theme = "furo"
html_title = "evasync"
html_static_path = ["docs/_static"]
html_css_files = ["evasync.css"]  # code and sessions wrap on narrow screens
copybutton_prompt_text = r">>> |\.\.\. |\$ |> "
copybutton_prompt_is_regexp = True
# Transcripts show a play session; copying them as commands would make no sense.
copybutton_selector = "div:not(.transcript) > div.highlight pre"
