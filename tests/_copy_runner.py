"""Run one page's copied code blocks, in page order, in this fresh interpreter.

Usage: ``python -I _copy_runner.py PLAN.json REPORT.json``, in an empty working directory.
tests/test_docs_copy.py writes the plan and reads the report; nothing here is imported by it.

All blocks of the page share one module namespace (a module registered under the plan's name,
so that functions defined on the page have an import path, as they do in the reader's own
module), which starts empty: whatever a block uses, an earlier block of the page made. Kinds:

- ``script``: the copied text runs as a whole, like a file; any exception is a failure.
- ``session``: the copied text of a ``>>>`` session runs one top-level statement at a time, as
  Python's interactive interpreter runs pasted code: expression values are echoed and an
  exception is printed as a traceback and does not stop the next statement. The output is
  reported, for the caller to compare with the output the page shows.
- ``file``: a block the page tells the reader to save under a name (its caption): it is saved
  under that name here, folders made as needed.
- ``pytest``: after a page whose saved files include tests (``test_*.py``) or a
  ``conftest.py``: pytest runs in this folder, as the pages tell the reader to, with the folder
  importable (the reader's game package is in it).
- ``transcript``: a play session (no copy button) is played with :func:`evasync.transcript.check`.

While the blocks run, every call of a function whose name is in the plan's ``names`` is noted
(file, first line, name), in every thread, so the caller can tell which functions ran.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import linecache
import pathlib
import sys
import threading
import traceback
import types


def _traceback(error: BaseException) -> str:
    # Leave out this runner's own frame, as the interactive interpreter leaves out its own.
    return "".join(traceback.format_exception(type(error), error, error.__traceback__.tb_next))


def _run_session(code: str, filename: str, namespace: dict) -> list[list[int]]:
    """Run statement by statement; return the line ranges of the statements that raised."""
    raised = []
    for statement in ast.parse(code, filename).body:
        compiled = compile(ast.Interactive(body=[statement]), filename, "single",
                           dont_inherit=True)
        try:
            exec(compiled, namespace)
        except Exception as error:
            print(_traceback(error), end="")
            first = min([statement.lineno] + [decorator.lineno for decorator in
                                              getattr(statement, "decorator_list", [])])
            raised.append([first, statement.end_lineno])
    return raised


def _save(code: str, filename: str) -> None:
    path = pathlib.Path(filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code + "\n", encoding="utf-8")


def _run_pytest(folder: str) -> None:
    import pytest

    sys.path.insert(0, folder)
    exit_code = pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", folder, folder])
    if exit_code != 0:
        raise AssertionError(f"pytest in {folder} exited with {int(exit_code)}")


def _play(block: dict) -> None:
    from evasync.transcript import check

    check(block["code"], block["cmdsets"], block["typeclass"] or None)


def main(plan_path: str, report_path: str) -> None:
    with open(plan_path, encoding="utf-8") as file:
        plan = json.load(file)
    module = types.ModuleType(plan["module"])
    module.__dict__["__builtins__"] = builtins
    sys.modules[plan["module"]] = module
    namespace = module.__dict__

    watched = set(plan["names"])
    ran: set[tuple[str, int, str]] = set()

    def note_call(frame, event, arg):
        code = frame.f_code
        if code.co_name in watched:
            ran.add((code.co_filename, code.co_firstlineno, code.co_name))

    results = []
    sys.settrace(note_call)
    threading.settrace(note_call)
    try:
        for block in plan["blocks"]:
            filename = block["filename"]
            linecache.cache[filename] = (len(block["code"]), None,
                                         block["code"].splitlines(True), filename)
            output, errors = io.StringIO(), io.StringIO()
            result = {"where": block["where"], "error": None, "raised": []}
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
                try:
                    if block["kind"] == "script":
                        exec(compile(block["code"], filename, "exec", dont_inherit=True),
                             namespace)
                    elif block["kind"] == "session":
                        result["raised"] = _run_session(block["code"], filename, namespace)
                    elif block["kind"] == "file":
                        _save(block["code"], filename)
                    elif block["kind"] == "pytest":
                        _run_pytest(filename)
                    elif block["kind"] == "transcript":
                        _play(block)
                    else:
                        raise ValueError(f"unknown block kind {block['kind']!r}")
                except BaseException as error:  # SystemExit too: a page must not end the run
                    result["error"] = _traceback(error)
            result["output"] = output.getvalue()
            result["stderr"] = errors.getvalue()
            results.append(result)
    finally:
        sys.settrace(None)
        threading.settrace(None)

    with open(report_path, "w", encoding="utf-8") as file:
        json.dump({"blocks": results, "ran": sorted(ran)}, file)

    # Tidy up after the page (this cannot change what was reported): close the runtimes it made.
    from evasync.testing import VirtualRuntime

    for value in list(namespace.values()):
        if isinstance(value, VirtualRuntime):
            value.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
