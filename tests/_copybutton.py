"""What sphinx-copybutton puts on the clipboard, computed in Python.

A line-for-line port of ``filterText`` and ``formatCopyText`` from the installed package's
``_static/copybutton_funcs.js``, with the settings read the way Sphinx reads them: the
extension's own defaults (from its ``setup()``), overridden by ``conf.py``.
tests/test_copybutton_browser.py checks this port against the real JavaScript in Chromium.
"""

from __future__ import annotations

import re
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sphinx_copybutton

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CopyButtonConfig:
    prompt_text: str
    prompt_is_regexp: bool
    only_copy_prompt_lines: bool
    remove_prompts: bool
    copy_empty_lines: bool
    line_continuation_character: str
    here_doc_delimiter: str
    selector: str
    exclude: str


class _ConfigRecorder:
    """Stands in for the Sphinx app in ``sphinx_copybutton.setup``: keeps the config defaults."""

    def __init__(self) -> None:
        self.defaults: dict[str, Any] = {}

    def add_config_value(self, name: str, default: Any, *args: Any, **kwargs: Any) -> None:
        self.defaults[name] = default

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None  # connect, add_css_file, add_js_file


def read_config(conf_py: Path = ROOT / "conf.py") -> CopyButtonConfig:
    recorder = _ConfigRecorder()
    sphinx_copybutton.setup(recorder)
    values = {**recorder.defaults, **{name: value for name, value in runpy.run_path(
        str(conf_py)).items() if name.startswith("copybutton_")}}
    fields = CopyButtonConfig.__dataclass_fields__
    return CopyButtonConfig(**{name: values[f"copybutton_{name}"] for name in fields})


def filter_text(pre: Any, exclude: str) -> str:
    """``filterText``: the text of ``pre`` (a BeautifulSoup tag) without the excluded nodes.

    The JavaScript reads ``innerText`` of a detached clone, which is its ``textContent``.
    """
    clone = pre.__copy__()
    if exclude:
        for node in clone.select(exclude):
            node.decompose()
    return clone.get_text()


def _js_regexp(pattern: str) -> re.Pattern[str]:
    # The prompt patterns used here are written in the common subset of JavaScript and Python
    # regular expressions (ASCII classes: JavaScript's \d and \w are ASCII-only); a construct
    # outside it is refused rather than guessed at.
    if re.search(r"\(\?P|\(\?<[^=!]|\\[AZzs]|\(\?[aiLmsux]", pattern):
        raise ValueError(f"prompt pattern {pattern!r} uses syntax JavaScript reads differently")
    return re.compile(pattern, re.ASCII)


def format_copy_text(text: str, config: CopyButtonConfig) -> str:
    """``formatCopyText``: the prompts and output stripped from ``text`` as the button does."""
    use_line_cont = bool(config.line_continuation_character)
    use_here_doc = bool(config.here_doc_delimiter)
    prompt = config.prompt_text if config.prompt_is_regexp else re.escape(config.prompt_text)
    regexp = _js_regexp(f"^({prompt})(.*)")

    output_lines: list[str] = []
    got_line_cont = got_here_doc = False
    line_got_prompt: list[bool] = []
    for line in text.split("\n"):
        match = regexp.match(line)
        if match or got_line_cont or got_here_doc:
            prompt_found = bool(regexp.search(line))
            line_got_prompt.append(prompt_found)
            if config.remove_prompts and prompt_found:
                output_lines.append(match[2])
            else:
                output_lines.append(line)
            got_line_cont = line.endswith(config.line_continuation_character) and use_line_cont
            if use_here_doc and config.here_doc_delimiter in line:
                got_here_doc = not got_here_doc
        elif not config.only_copy_prompt_lines:
            output_lines.append(line)
        elif config.copy_empty_lines and line.strip() == "":
            output_lines.append(line)

    if any(line_got_prompt):
        text = "\n".join(output_lines)
    if text.endswith("\n"):
        text = text[:-1]
    return text
