"""Write python.inv and twisted.inv: the intersphinx inventories the docs link through.

Sphinx reads these two files (see ``intersphinx_mapping`` in conf.py) instead of fetching
Python's and Twisted's inventories, so the site builds offline. They are cut down to the modules
evasync's API and pages touch, which keeps them small; a name outside them is simply not linked.

Where the full inventories come from, to refresh after a Python or Twisted upgrade:

* Python: ``objects.inv`` of the Python documentation, as published with it online, or from
  Debian's ``python3.11-doc`` package (``/usr/share/doc/python3.11/html/objects.inv``).
* Twisted: ``objects.inv`` of its API documentation, or made from the installed Twisted with
  pydoctor, the tool Twisted's own API docs are built with::

    pydoctor --make-intersphinx --html-output=twisted-api .venv/lib/python3.*/site-packages/twisted

then::

    .venv/bin/python docs/_inventories/refresh.py path/to/python/objects.inv twisted-api/objects.inv

Licences: python.inv is derived from the Python documentation, Copyright (c) 2001 Python
Software Foundation, under the PSF License Version 2; twisted.inv is derived from Twisted's
source, Copyright (c) 2001 Twisted Matrix Laboratories, under the MIT license. Both allow
redistribution with that notice.
"""

from __future__ import annotations

import builtins
import pathlib
import re
import sys
import zlib

HERE = pathlib.Path(__file__).resolve().parent

#: Modules whose names are kept (with everything inside them); Python's builtins are kept too.
PYTHON_MODULES = ("typing", "collections.abc", "concurrent.futures", "os", "pathlib", "pickle",
                  "sqlite3", "threading", "multiprocessing", "asyncio", "contextlib")
TWISTED_MODULES = ("twisted.internet.defer", "twisted.python.failure", "twisted.internet.task",
                   "twisted.internet.interfaces", "twisted.internet.threads",
                   "twisted.internet.error", "twisted.internet.endpoints",
                   "twisted.internet.protocol", "twisted.python.threadpool", "twisted.logger",
                   "twisted.protocols.amp", "twisted.conch.telnet", "twisted.trial.unittest",
                   "twisted.application.service", "twisted.application.internet")
#: Where a class says it lives (its __module__, which autodoc links to) -> where it is documented.
ALIASES = {"concurrent.futures._base.Executor": "concurrent.futures.Executor",
           "concurrent.futures._base.Future": "concurrent.futures.Future"}

LINE = re.compile(r"(?x)(.+?)\s+([^\s:]+:\S+)\s+(-?\d+)\s+(\S*)\s+(.*)")


def read(path: pathlib.Path) -> tuple[str, str, list[tuple[str, ...]]]:
    """(project, version, entries) of a version 2 inventory; entries as (name, type, priority,
    uri, display name)."""
    *header, compressed = path.read_bytes().split(b"\n", 4)  # four lines, then zlib data
    project = header[1].decode().removeprefix("# Project: ")
    version = header[2].decode().removeprefix("# Version: ")
    body = zlib.decompress(compressed).decode()
    return project, version, [m.groups() for m in map(LINE.match, body.splitlines()) if m]


def write(path: pathlib.Path, project: str, version: str, entries: list[tuple[str, ...]]) -> None:
    body = "".join(" ".join(entry) + "\n" for entry in sorted(set(entries)))
    path.write_bytes(f"# Sphinx inventory version 2\n# Project: {project}\n# Version: {version}\n"
                     "# The remainder of this file is compressed using zlib.\n".encode()
                     + zlib.compress(body.encode(), 9))


def within(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def cut(entries: list[tuple[str, ...]], keep) -> list[tuple[str, ...]]:
    kept = [e for e in entries if e[1].startswith("py:") and keep(e[0])]
    by_name = {e[0]: e for e in kept}
    for alias, name in ALIASES.items():
        if name in by_name:
            entry = by_name[name]
            uri = entry[3].replace("$", name) if entry[3].endswith("$") else entry[3]
            kept.append((alias, entry[1], entry[2], uri, name))
    return kept


def main(python_inv: str, twisted_inv: str) -> None:
    project, version, entries = read(pathlib.Path(python_inv))
    python = cut(entries, lambda name: within(name, PYTHON_MODULES)
                 or name.partition(".")[0] in vars(builtins))
    write(HERE / "python.inv", project, version, python)
    project, version, entries = read(pathlib.Path(twisted_inv))
    write(HERE / "twisted.inv", project, version,
          cut(entries, lambda name: within(name, TWISTED_MODULES)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
