"""The API reference (docs/reference/) documents every public name, and nothing internal."""

from __future__ import annotations

import collections
import pathlib
import re
import subprocess
import sys

import evasync

REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "reference"
ENTRY = re.compile(r"^\.\. (auto\w+|py:\w+):: (\S+?)(?:\(\))?\s*$", re.M)

#: The public API: evasync's ``__all__``, and the public names of the modules users import.
PUBLIC = {
    "evasync": list(evasync.__all__),
    "evasync.objects": ["AttributeHandler", "NAttributeHandler"],  # what obj.db, obj.ndb are
    "evasync.store": ["Store", "Trust", "default_path", "default_synchronous"],
    "evasync.locks": ["parse_locks", "PERMISSION_HIERARCHY", "permissions", "is_superuser"],
    "evasync.testing": ["VirtualRuntime", "VirtualClock", "Recorder"],
    "evasync.transcript": ["check", "run", "parse", "Step", "TranscriptParser",
                           "TranscriptError"],
    "evasync.server.characters": ["Character"],
    "evasync.server.commands": ["CharacterCmdSet"],
}
#: Modules whose own docstring is shown (``automodule`` without members).
PUBLIC_MODULES = {"evasync.locks", "evasync.transcript", "evasync.sphinxext"}


def entries() -> list[tuple[str, str, str]]:
    """(page, directive, documented name) for every autodoc and py: entry of the reference."""
    return [(page.name, directive, name) for page in sorted(REFERENCE.glob("*.md"))
            for directive, name in ENTRY.findall(page.read_text())]


def test_the_reference_is_split_by_topic():
    pages = {page for page, _, _ in entries()}
    assert {"tasks.md", "objects.md", "commands.md", "interactive.md", "run-async.md",
            "testing.md", "server.md"} <= pages


def test_every_public_name_is_documented():
    documented = {name for _, directive, name in entries() if directive != "automodule"}
    missing = sorted(f"{module}.{name}" for module, names in PUBLIC.items() for name in names
                     if f"{module}.{name}" not in documented)
    assert not missing, f"public names without a reference entry in {REFERENCE}: {missing}"


def test_nothing_internal_is_documented():
    public = {f"{module}.{name}" for module, names in PUBLIC.items() for name in names}
    internal = [f"{page}: {name}" for page, directive, name in entries()
                if name not in (PUBLIC_MODULES if directive == "automodule" else public)]
    assert not internal, f"internal names in the API reference: {internal}"


def test_every_name_is_documented_once():
    counts = collections.Counter(name for _, _, name in entries())
    assert [name for name, n in counts.items() if n > 1] == []


def test_every_command_line_option_is_on_the_server_page():
    page = (REFERENCE / "server.md").read_text()
    for command in ("start", "stop", "reload", "status"):
        assert f"`evasync {command}`" in page, command
        shown = subprocess.run([sys.executable, "-m", "evasync", command, "--help"],
                               capture_output=True, text=True, timeout=60, check=True).stdout
        for option in set(re.findall(r"(--[a-z-]+)", shown)) - {"--help"}:
            assert f"`{option} " in page or f"`{option}`" in page, (command, option)
