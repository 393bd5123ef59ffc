"""Each code block of the testing howto runs alone, pasted into a fresh interpreter.

The page is where readers come to copy a test into their own suite, one block at a time, so no
block may lean on the imports or names of an earlier one. (tests/test_docs_copy.py runs every
page's blocks in page order; this is the stricter check for this page.) A block captioned with a
file name is saved under it and run by pytest, as the page says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "howtos" / "testing.md"
BLOCK = re.compile(r"^```(?:python|\{code-block\} python)\n(?P<options>(?::\w+: [^\n]*\n)*)\n?"
                   r"(?P<code>.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[int, str, str]]:
    text = PAGE.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        caption = re.search(r":caption: (.*)", match["options"])
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, caption[1].strip() if caption else "", match["code"]))
    return found


BLOCKS = _blocks()


def test_the_page_has_the_blocks_this_test_expects():
    assert len(BLOCKS) >= 6
    assert [caption for _, caption, _ in BLOCKS if caption] == ["test_swing.py"]


@pytest.mark.parametrize("line, caption, code", BLOCKS, ids=[f"line {b[0]}" for b in BLOCKS])
def test_the_block_runs_alone(tmp_path, line, caption, code):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVASYNC")}
    env["PYTHONPATH"] = str(ROOT)  # the page's howto modules, as in a clone of the repository
    env["TMPDIR"] = str(tmp_path)
    if caption:
        (tmp_path / caption).write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", caption]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{PAGE.name}:{line}:\n{done.stdout}\n{done.stderr}"
