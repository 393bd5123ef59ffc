"""Copy, paste, run: what the copy button of every code block copies works where it is pasted.

For every page of the built site, the text each copy button puts on the clipboard (see
``_copybutton``, checked against the real button in tests/test_copybutton_browser.py) runs in a
fresh interpreter in an empty temporary directory, in page order, with nothing but what the
page showed before it (see ``_copy_runner`` for how each kind of block runs). A ``>>>``
session must print exactly what the page shows; a script must not raise; a block the page asks
to save as ``test_*.py`` passes under pytest; the page's transcripts are played in their place.

Console blocks are not run: they build the site, run this very suite, or start a server that
runs until stopped. Their copied text must be exactly the ``$`` commands they show (no prompt,
no output) and parse as shell; docs/conftest.py checks that each command exists.

Every function a block defines must have run by the end of the page: the runner notes each call,
and a function counts as run when code of the same name and the same text ran (a howto's
function runs from its module when a transcript plays it). A function whose definition raised,
as a page shows on purpose, was never defined and is not counted.

A block marked as a fragment (a caption starting "Fragment", or the class ``fragment``) is
not run; the suite allows :data:`FRAGMENTS_ALLOWED` of them.
"""

from __future__ import annotations

import ast
import doctest
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._site import ROOT, Block, Site

RUNNER = Path(__file__).with_name("_copy_runner.py")
#: The site's pages: docs/ less what conf.py keeps out of it (the example game has its own docs,
#: played in its own project by tests/test_own_game.py).
PAGES = sorted(str(p.relative_to(ROOT / "docs").with_suffix("")) for p in (ROOT / "docs").rglob("*.md")
               if not p.name.startswith("_") and p.relative_to(ROOT / "docs").parts[0] != "examples")
#: Blocks marked as fragments, site-wide. Raise it only for a block that cannot be whole.
FRAGMENTS_ALLOWED = 0
#: A caption that names a file (``test_swing.py``, ``mygame/commands.py``, ``pyproject.toml``): the
#: page tells the reader to save the block under that name, and so does this test.
FILE_CAPTION = re.compile(r"^[\w.-]+(?:/[\w.-]+)*\.(?:py|toml|md|cfg|ini|txt)$")
#: Saved files that pytest runs once the page's blocks are all saved, as the pages say to.
PYTEST_FILE = re.compile(r"(?:^|/)(?:test_\w*\.py|conftest\.py)$")


def _functions(code: str) -> list[tuple[str, int, tuple[str, str]]]:
    """(qualified name, first line, key) of every def in ``code``; the key is name and text."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                first = min([d.lineno for d in child.decorator_list] + [child.lineno])
                found.append((qualname, first, (qualname, ast.dump(child))))
                visit(child, qualname + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(code), "")
    return found


def _expected_output(shown: str) -> str:
    return "".join(example.want for example in doctest.DocTestParser().get_examples(shown))


def _check_console(block: Block) -> list[str]:
    commands = [line[2:].rstrip() for line in block.shown.splitlines() if line.startswith("$ ")]
    problems = []
    if block.copied != "\n".join(commands):
        problems.append(f"{block.where}: the copy button copies\n{block.copied}\n"
                        f"instead of the commands\n" + "\n".join(commands))
    parsed = subprocess.run(["bash", "-n", "-c", block.copied], capture_output=True, text=True)
    if parsed.returncode:
        problems.append(f"{block.where}: the copied commands are not valid shell: {parsed.stderr}")
    return problems


def _plan(blocks: list[Block], workdir: Path) -> tuple[list[dict], list[str]]:
    planned, problems = [], []
    for block in blocks:
        entry = {"where": block.where, "filename": block.where, "block": block}
        if block.copied is None:
            if block.language != "transcript":
                problems.append(f"{block.where}: a {block.language} block without a copy button; "
                                "only transcripts are shown without one")
                continue
            planned.append({**entry, "kind": "transcript", "code": block.shown,
                            "cmdsets": [c.strip() for c in block.node["cmdset"].split(",")
                                        if c.strip()],
                            "typeclass": block.node.get("typeclass", "")})
        elif block.is_fragment:
            continue
        elif block.language == "console":
            problems.extend(_check_console(block))
        elif FILE_CAPTION.match(block.caption):
            planned.append({**entry, "kind": "file", "code": block.copied,
                            "filename": str(workdir / block.caption)})
        elif not block.is_python:
            problems.append(f"{block.where}: a {block.language} block has a copy button, and "
                            "this test does not know how to run what it copies")
        else:
            planned.append({**entry, "kind": "session" if block.is_session else "script",
                            "code": block.copied})
    saved = [step["filename"] for step in planned if step["kind"] == "file"]
    if any(PYTEST_FILE.search(name) for name in saved):
        planned.append({"where": f"{blocks[0].page}: the files it shows", "kind": "pytest",
                        "filename": str(workdir), "code": ""})
    return planned, problems


def _run(docname: str, planned: list[dict], tmp_path: Path) -> dict:
    workdir, tmpdir = tmp_path / "work", tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    names = sorted({name.rsplit(".", 1)[-1] for step in planned
                    if step["kind"] not in ("transcript", "pytest")
                    and (step["kind"] != "file" or step["filename"].endswith(".py"))
                    for name, _, _ in _functions(step["code"])})
    plan = {"module": "page_" + re.sub(r"\W", "_", docname), "names": names,
            "blocks": [{k: v for k, v in step.items() if k != "block"} for step in planned]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVASYNC")}
    env["TMPDIR"] = str(tmpdir)
    done = subprocess.run(
        [sys.executable, "-I", str(RUNNER), str(tmp_path / "plan.json"), str(tmp_path / "report.json")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and (tmp_path / "report.json").exists(), (
        f"the runner failed on {docname}:\n{done.stdout}\n{done.stderr}")
    return json.loads((tmp_path / "report.json").read_text())


def _unrun_functions(planned: list[dict], report: dict) -> list[str]:
    sources = {step["filename"]: step["code"] for step in planned
               if step["kind"] not in ("transcript", "pytest")}
    ran = set()
    parsed: dict[str, list] = {}
    for filename, line, name in report["ran"]:
        if filename not in parsed:
            source = sources.get(filename)
            if source is None and filename.endswith(".py") and Path(filename).is_file():
                source = Path(filename).read_text(encoding="utf-8")
            parsed[filename] = _functions(source) if source is not None else []
        ran.update(key for qualname, first, key in parsed[filename]
                   if first == line and qualname.rsplit(".", 1)[-1] == name)
    problems = []
    for step, result in zip(planned, report["blocks"]):
        if step["kind"] in ("transcript", "pytest") or not step["filename"].endswith(".py") \
                and step["kind"] == "file":
            continue
        for qualname, first, key in _functions(step["code"]):
            if any(start <= first <= end for start, end in result["raised"]):
                continue  # its definition raised (as the page shows): it never existed
            if key not in ran:
                problems.append(f"{step['where']}: {qualname}() is defined here but never runs, "
                                "in this block or a later one of the page: a typo in it would "
                                "go unnoticed")
    return problems


@pytest.mark.parametrize("docname", PAGES)
def test_what_the_copy_buttons_copy_runs(built_site: Site, docname: str, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    planned, problems = _plan(built_site.blocks(docname), tmp_path / "work")
    if planned:
        report = _run(docname, planned, tmp_path)
        for step, result in zip(planned, report["blocks"]):
            copied = "\n".join(f"    {line}" for line in step["code"].splitlines())
            if result["error"]:
                problems.append(f"{step['where']}: {step['kind']} failed:\n{result['error']}"
                                f"{result['output']}{result['stderr']}\ncopied text:\n{copied}")
            elif step["kind"] == "session":
                want = _expected_output(step["block"].shown)
                checker = doctest.OutputChecker()
                if not checker.check_output(want, result["output"], doctest.ELLIPSIS):
                    problems.append(
                        f"{step['where']}: pasted into Python, the copied text prints something "
                        "else than the page shows:\n" + checker.output_difference(
                            doctest.Example("", want), result["output"], doctest.ELLIPSIS)
                        + f"copied text:\n{copied}")
        problems.extend(_unrun_functions(planned, report))
    assert not problems, "\n\n".join(problems)


def test_every_page_is_checked(built_site: Site) -> None:
    assert built_site.docnames() == PAGES


def test_generated_pages_have_no_copy_buttons(built_site: Site) -> None:
    """Index, search and the highlighted module sources: listings, not examples to paste."""
    with_buttons = [str(path.relative_to(built_site.html))
                    for path in built_site.pages_without_doctree()
                    if built_site.copy_targets(built_site.soup(path))]
    assert not with_buttons


def test_fragments_are_few(built_site: Site) -> None:
    fragments = [block.where for docname in PAGES for block in built_site.blocks(docname)
                 if block.copied is not None and block.is_fragment]
    assert len(fragments) <= FRAGMENTS_ALLOWED, (
        f"{len(fragments)} blocks are marked as fragments (at most {FRAGMENTS_ALLOWED}): "
        + ", ".join(fragments))
