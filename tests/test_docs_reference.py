"""The API reference (docs/reference/) documents every public name, and nothing internal.

"Documented" is read from the built site (the ``built_site`` fixture: Sphinx's doctrees), not
from the page sources: an entry counts only if Sphinx made a description of that name with text
in it. Every public class is also checked member by member: each method, property, class
attribute and instance attribute (found in the class's source as ``self.name = ...``) whose name
does not start with ``_`` needs an entry of its own, on the class or on a public class it
inherits it from, unless :data:`NOT_API` names it with the reason it is left out.
"""

from __future__ import annotations

import ast
import collections
import importlib
import inspect
import pathlib
import pickle
import re
import subprocess
import sys
import textwrap

import pytest
from docutils import nodes
from sphinx import addnodes

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

_STORE_ROWS = ("single rows read and written for the task handler, the game objects and the demo "
               "server's accounts: use delay(), the objects and evasync.server instead")
#: Members of public classes that are deliberately not API, with the reason. The reference says
#: that anything it does not list is internal; this list is where that is decided, one name at
#: a time, so that a new public method cannot go undocumented by accident.
NOT_API = {
    **{f"evasync.store.Store.{name}": _STORE_ROWS for name in (
        "reserve_id_block", "next_id_block", "add_task", "set_task_state", "delete_tasks",
        "delete_all_tasks", "tasks", "quarantine_tasks", "create_object", "object_row",
        "object_ids", "find_objects", "set_object_key", "delete_object", "attributes", "set_attribute",
        "delete_attribute", "create_account", "account", "count_accounts")},
    "evasync.TaskHandler.stop": "Runtime.reload() and close() stop the old handler",
    "evasync.Runtime.stop_hooks": "run_async's pools register their shutdown here",
    "evasync.Runtime.services": "run_async keeps its pools here, per runtime",
}


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


# -- every member of every public class ---------------------------------------------------------

def public_objects() -> dict[str, object]:
    """Every public name, by its documented full name."""
    found = {}
    for module, names in PUBLIC.items():
        imported = importlib.import_module(module)
        for name in names:
            found[f"{module}.{name}"] = getattr(imported, name)
    return found


def public_classes() -> dict[type, str]:
    """Each public class and the full name it is documented under (the first one listed)."""
    classes: dict[type, str] = {}
    for full_name, value in public_objects().items():
        if isinstance(value, type):
            classes.setdefault(value, full_name)
    return classes


def own_members(cls: type) -> set[str]:
    """The public names ``cls`` itself defines: in its body (methods, properties, class
    attributes, annotations, slots) and as ``self.<name> = ...`` in its methods."""
    names = set(vars(cls)) | set(vars(cls).get("__annotations__", {}))
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        source = ""
    for node in ast.walk(ast.parse(source)):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) \
                        and part.value.id == "self":
                    names.add(part.attr)
    return {name for name in names if not name.startswith("_")}


def members(classes: dict[type, str]) -> set[str]:
    """The full names under which the public members of the public classes must be documented:
    each member on the most basic public class that has it (``DefaultObject.default_cmdsets``,
    not ``DefaultCharacter.default_cmdsets``); a member only a private base has, on the class."""
    found: set[str] = set()
    for cls in classes:
        package = cls.__module__.split(".")[0]  # not Exception's members, nor list's
        ours = [base for base in cls.__mro__ if base.__module__.split(".")[0] == package]
        for member in set().union(*(own_members(base) for base in ours)):
            having = [base for base in cls.__mro__ if base in classes
                      and any(member in own_members(b) for b in base.__mro__ if b in ours)]
            found.add(f"{classes[having[-1] if having else cls]}.{member}")
    return found


def descriptions(doctrees: pathlib.Path) -> dict[str, str]:
    """Full name -> the text of its description, for every Python entry of the built reference."""
    found: dict[str, str] = {}
    for path in sorted((doctrees / "reference").glob("*.doctree")):
        for desc in pickle.loads(path.read_bytes()).findall(addnodes.desc):
            if desc.get("domain") != "py":
                continue
            text = " ".join(content.astext() for content in desc.children
                            if isinstance(content, addnodes.desc_content)).strip()
            for signature in desc.children:
                if isinstance(signature, addnodes.desc_signature):
                    for full_name in signature["ids"]:
                        found[full_name] = text
    return found


def undocumented(wanted: set[str], described: dict[str, str]) -> list[str]:
    """The members of ``wanted`` without a description that has text, but for :data:`NOT_API`."""
    return sorted(name for name in wanted if name not in NOT_API and not described.get(name))


@pytest.fixture(scope="module")
def described(built_site) -> dict[str, str]:
    return descriptions(built_site.doctrees)


def test_every_public_name_has_a_description(described):
    empty = sorted(name for name in public_objects() if not described.get(name))
    assert not empty, f"public names whose reference entry is missing or says nothing: {empty}"


def test_every_public_member_is_documented(described):
    missing = undocumented(members(public_classes()), described)
    assert not missing, (
        f"public members without a description of their own in {REFERENCE}: {missing}. Document "
        "each on its class's page (a docstring listed in :members:, or the class's Attributes "
        "section), or, if it is not API, say why in NOT_API")


def test_what_is_not_api_exists_and_is_not_documented(described):
    wanted = members(public_classes())
    assert sorted(set(NOT_API) - set(wanted)) == [], "NOT_API names members that do not exist"
    assert sorted(name for name in NOT_API if described.get(name)) == []


def test_the_member_check_sees_the_members_and_the_descriptions(described):
    """Not vacuous: the members found include kinds of every sort (methods, properties, class
    attributes, attributes set in __init__, slots, inherited ones under their base) and the
    built reference holds their descriptions."""
    wanted = members(public_classes())
    for name in ("evasync.TaskHandler.clock", "evasync.TaskHandler.clean_stale_tasks",
                 "evasync.TaskHandler.stale_timeout", "evasync.TaskHandler.to_save",
                 "evasync.Runtime.clock", "evasync.store.Store.path",
                 "evasync.store.Store.quarantined", "evasync.DefaultObject.default_cmdsets",
                 "evasync.DefaultObject.deleted", "evasync.Task.due", "evasync.ask.timeout",
                 "evasync.Command.runs_during_questions", "evasync.MuxCommand.lhslist",
                 "evasync.store.Trust.refusal"):
        assert name in wanted, name
        assert described.get(name), name
    for inherited in ("evasync.DefaultCharacter.default_cmdsets",
                      "evasync.server.characters.Character.default_cmdsets",
                      "evasync.testing.VirtualRuntime.clock", "evasync.MuxCommand.caller"):
        assert inherited not in wanted, inherited  # documented on the base
    assert len(wanted) > 150 and len(described) > 180


#: What a type reads like: names, dots, brackets, commas, ``|`` and ``…`` (no prose, no repr).
TYPE_TEXT = re.compile(r"[\w.\[\], |…]+")


def test_types_in_the_reference_read_as_types(built_site):
    """A "Type" or "Return type" field holds a type: not prose that napoleon took for one (a
    property docstring starting "The handler: ..."), nor the repr of an object autodoc could not
    name (``<InterfaceClass ...>``)."""
    fields = []
    for path in sorted((built_site.doctrees / "reference").glob("*.doctree")):
        for field in pickle.loads(path.read_bytes()).findall(nodes.field):
            if field[0].astext() in ("Type", "Return type"):
                desc = field.parent
                while not isinstance(desc, addnodes.desc):
                    desc = desc.parent
                fields.append((desc[0]["ids"], field[0].astext(),
                               " ".join(field[1].astext().split())))
    assert len(fields) > 50
    bad = [field for field in fields if not TYPE_TEXT.fullmatch(field[2])]
    assert not bad, f"fields that do not read as a type: {bad}"


def test_the_reference_names_no_private_module(built_site):
    """A type written as autodoc found it in the source (``_codec.Trust``) shows the reader a
    module they may not import; the reference says ``Trust`` and links to it."""
    private = re.compile(r"(?<![\w.])(?:evasync\.)?_[a-z]\w*\.\w")
    shown = [(path.stem, text) for path in sorted((built_site.doctrees / "reference").glob(
                 "*.doctree"))
             for text in map(str, pickle.loads(path.read_bytes()).findall(nodes.Text))
             if private.search(text)]
    assert shown == []


class _Documented:
    """A class of this test: ``shown`` and ``hidden`` stand for a documented and an
    undocumented member."""

    def shown(self) -> None:
        self.attribute = 1

    def hidden(self) -> None:
        self._private = 2


def test_an_undocumented_method_or_attribute_or_an_empty_entry_is_reported():
    wanted = members({_Documented: "tests._Documented"})
    assert sorted(wanted) == ["tests._Documented.attribute", "tests._Documented.hidden",
                              "tests._Documented.shown"]
    described = {"tests._Documented.shown": "Does it.", "tests._Documented.attribute": ""}
    assert undocumented(wanted, described) == ["tests._Documented.attribute",
                                               "tests._Documented.hidden"]
