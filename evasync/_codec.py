"""Turn callbacks and plain data into JSON for the store, and back, without pickle.

Every container is tagged so that types survive the round trip: a tuple stays a tuple, a set a
set, and dict keys keep their types. Stored game objects travel as references by id. Anything
else is refused with :class:`~evasync.errors.NotPersistableError` naming what was refused, and so
is data nested deeper than :data:`MAX_DEPTH` (the decoder could not read it back).

Names read back from the store (callbacks, typeclasses, command sets) are only imported from
modules the runtime's :class:`Trust` allows: a row naming ``os:system`` is refused, never run.
"""

from __future__ import annotations

import base64
import functools
import importlib
import importlib.util
import json
import math
import os
import site
import sys
import sysconfig
from typing import Any, Callable, Iterable

from .errors import NotPersistableError

_SCALARS = (type(None), bool, int, float, str)

#: Containers nested deeper than this are refused when stored: JSON decoding recurses once per
#: level (twice for tagged containers), and a value that cannot be read back must never be
#: accepted.
MAX_DEPTH = 100

#: Subclasses of list, dict and set that are stored as their base type (the ``db`` containers
#: that save themselves on change register here).
PLAIN_ALIASES: dict[type, type] = {}

#: JSON's own (C) string quoting.
_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

_HOW_TO_FIX = (
    "persistent tasks can store module-level functions, methods of stored game objects, plain "
    "data (numbers, strings, bytes, None, bools and lists/tuples/dicts/sets of those) and stored "
    "game objects"
)


# -- which modules stored names may come from ------------------------------------------------

#: Top-level packages always trusted.
ALWAYS_TRUSTED = ("evasync", "howtos")


def _installation_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # some virtualenv builds
        pass
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.add(user)
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


class Trust:
    """Which modules the store may name: where persistent callbacks, typeclasses and stored
    command sets can come from.

    A module is trusted if its top-level package is ``evasync``, ``howtos``, one of
    ``modules`` (or of ``$EVASYNC_TRUSTED``, comma-separated), or, with ``game_code`` (the
    default), game code: a package found outside the Python installation and its
    site-packages (your game's own folder, a source checkout). The standard library, built-in
    modules and installed third-party packages are not trusted, so a store row naming
    ``os:system``, ``subprocess:run`` or ``builtins:exec`` is refused.

    Args:
        modules: More top-level package names to trust (an installed game package, say).
        game_code: Trust packages that live outside the Python installation.

    Attributes:
        modules: The top-level package names trusted by name: ``evasync``, ``howtos``,
            ``modules`` and those of ``$EVASYNC_TRUSTED`` as it was when the Trust was made
            (a frozenset).
        game_code: Whether game code found outside the Python installation is trusted too.
    """

    def __init__(self, modules: Iterable[str] = (), game_code: bool = True) -> None:
        extra = [m.strip() for m in os.environ.get("EVASYNC_TRUSTED", "").split(",")]
        self.modules = frozenset(filter(None, [*ALWAYS_TRUSTED, *modules, *extra]))
        self.game_code = game_code
        self._verdicts: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"<Trust {sorted(self.modules)} game_code={self.game_code}>"

    def allows(self, module: str) -> bool:
        """True if names from ``module`` (a dotted module name) may be stored and loaded.

        Decided without importing anything but the parent packages' import machinery: the
        module itself is not run to find out.
        """
        top = module.partition(".")[0]
        verdict = self._verdicts.get(top)
        if verdict is None:
            verdict = self._verdicts[top] = top in self.modules or (
                self.game_code and _is_game_code(top))
        return verdict

    def refusal(self, module: str) -> str:
        """Why names from ``module`` may not be stored, and what to do instead, for an error
        message. For an installed package, it says how to trust it if it is yours; for the
        standard library (built-in modules included) and for a module Python cannot find,
        where trusting would be unsafe or would not help, it says to use a function of a
        module of your own game instead."""
        top = module.partition(".")[0]
        instead = ("call it from a function defined in a module of your own game, and store "
                   "that function")
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return (f"module {module!r} is not trusted to be named by the store: it is part of "
                    "Python's standard library, whose functions a stored row must not be able "
                    f"to call (os:system, say). Instead, {instead}")
        if not _findable(top):
            return (f"module {module!r} cannot be named by the store: Python finds no module "
                    f"{top!r} to import (not installed, not on sys.path; renamed or deleted?), "
                    "so it could not be found again after a restart. Define the function or "
                    "class in a module of your own game that this process can import")
        folder = " and your game's own folder" if self.game_code else ""
        return (f"module {module!r} is not trusted to be named by the store: it is an installed "
                f"package. Trusted: {', '.join(sorted(self.modules))}{folder}. If it is "
                f"yours, trust it with EVASYNC_TRUSTED={top} or "
                f"Runtime(trusted=[{top!r}]); if not, {instead}")


def _findable(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec
        return False


def _is_game_code(top: str) -> bool:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations:
        places = list(spec.submodule_search_locations)
    elif spec.origin and spec.origin not in ("built-in", "frozen"):
        places = [spec.origin]
    else:
        return False
    installed = _installation_dirs()
    return bool(places) and not any(
        (os.path.realpath(place) + os.sep).startswith(installed) for place in places)


# -- values ------------------------------------------------------------------------------------

def _is_game_object(value: Any) -> bool:
    return getattr(type(value), "_evasync_game_object", False)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


_CONTAINERS = (list, tuple, set, frozenset, dict)


class _Refused(Exception):
    """An item that cannot be stored; ``message`` says why, after the place that holds it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _too_long() -> str:
    # Python writes (and reads) ints of at most sys.get_int_max_str_digits() digits: a longer
    # one could not be read back either.
    return (f"cannot be stored: an int of more than {sys.get_int_max_str_digits()} digits, "
            "which Python does not write as text (sys.set_int_max_str_digits). Store it as "
            "bytes (value.to_bytes(...)) or in parts.")


def _encode(value: Any, depth: int = 0) -> str:
    # The JSON text, written directly (about three times faster than building the tagged
    # structure for json's encoder: a persistent delay() writes its arguments every time). No
    # place names are built while everything is storable, as it usually is; _explain() walks
    # again to say where a refusal came from.
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        try:
            return int.__repr__(value)
        except ValueError:
            raise _Refused(_too_long()) from None
    if kind is float:
        return _float_text(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    kind = PLAIN_ALIASES.get(kind, kind)
    if kind in _CONTAINERS:
        if depth >= MAX_DEPTH:
            raise _Refused(f"cannot be stored: it is nested more than {MAX_DEPTH} containers "
                           "deep (or contains itself). Store flatter data.")
        depth += 1
        if kind is list:
            return "[" + ",".join([_encode(item, depth) for item in value]) + "]"
        if kind is tuple:
            return '{"t":[' + ",".join([_encode(item, depth) for item in value]) + "]}"
        if kind is dict:
            return '{"d":[' + ",".join(["[" + _encode(k, depth) + "," + _encode(v, depth) + "]"
                                        for k, v in value.items()]) + "]}"
        tag = '{"s":[' if kind is set else '{"f":['
        return tag + ",".join([_encode(item, depth) for item in value]) + "]}"
    if kind is bytes:
        return '{"b":"' + base64.b64encode(value).decode("ascii") + '"}'
    if _is_game_object(value):
        if value.id is None or value.deleted:
            raise _Refused(f"is the deleted game object {value!r}; a persistent task can only "
                           "refer to objects that still exist")
        return '{"o":' + int.__repr__(value.id) + "}"
    if callable(value):
        hint = ("pass the data the function needs instead, and name the function as the "
                "task's callback")
    else:
        hint = "convert it to plain data (for example a dict of its fields) before storing it"
    raise _Refused(f"cannot be stored: {_describe(value)}. {_HOW_TO_FIX}; {hint}.")


def _explain(value: Any, where: str, depth: int = 0) -> NotPersistableError:
    """The refusal of the first item of ``value`` that cannot be stored, naming where it is."""
    kind = PLAIN_ALIASES.get(type(value), type(value))
    if kind in _CONTAINERS and depth < MAX_DEPTH:
        if kind is dict:
            places = [(f"{where} key {k!r}", k) for k in value]
            places += [(f"{where}[{k!r}]", v) for k, v in value.items()]
        elif kind is list or kind is tuple:
            places = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
        else:
            places = [(f"{where} item", item) for item in value]
        for place, item in places:
            try:
                _encode(item, depth + 1)
            except _Refused:
                return _explain(item, place, depth + 1)
    try:
        _encode(value, depth)
    except _Refused as refused:
        return NotPersistableError(f"{where} {refused.message}")
    raise AssertionError(f"{where}: nothing refused")  # pragma: no cover - callers know better


def _object_id(value: Any) -> int:
    """A stored object's id as written by :func:`dumps`: an int, never text, a bool or a float
    that ``get_object`` would turn into some other object's id."""
    if type(value) is not int:
        raise ValueError(f"malformed stored object id: {_describe(value)}")
    return value


class Decoder:
    """Inverse of :func:`dumps`; make one and reuse it for many texts (as ``load()`` does).

    Args:
        get_object: ``get_object(id)`` returns a stored object or raises LookupError.

    JSON hands every object to the hook innermost first, so each tagged container is rebuilt
    from contents that are already decoded, and lists need no rebuilding at all.
    """

    def __init__(self, get_object: Callable[[int], Any]) -> None:
        self._get_object = get_object
        self._json = json.JSONDecoder(object_hook=self._untag)

    def loads(self, text: str) -> Any:
        if not isinstance(text, str):
            raise ValueError(f"stored data must be JSON text, not {_describe(text)}")
        return self._json.decode(text)

    def _untag(self, data: dict) -> Any:
        if len(data) != 1:
            raise ValueError(f"malformed stored data: {_describe(data)}")
        (tag, body), = data.items()
        if tag == "t":
            return tuple(body)
        if tag == "d":
            return {key: value for key, value in body}
        if tag == "s":
            return set(body)
        if tag == "f":
            return frozenset(body)
        if tag == "b":
            return base64.b64decode(body)
        if tag == "o":
            return self._get_object(_object_id(body))
        raise ValueError(f"unknown tag {tag!r} in stored data")


def dumps_arguments(args: tuple, owner: Any) -> str:
    """A persistent task's positional arguments as JSON text (a list): :func:`dumps` of
    ``list(args)``, without the copy; NotPersistableError names the argument refused."""
    # Written out for the usual ints and strings (a persistent delay() pays for every argument);
    # anything else, a bool or an int subclass included, takes the general path.
    parts = []
    try:
        for arg in args:
            kind = type(arg)
            if kind is int:
                parts.append(f"{arg}")
            elif kind is str:
                parts.append(_string(arg))
            else:
                parts.append(_encode(arg, 1))
    except (_Refused, RecursionError, ValueError):  # ValueError: an int too long to write
        return dumps(list(args), "argument list of", owner)
    return "[" + ",".join(parts) + "]"


#: '["name",' for keyword names already seen (a game uses a few dozen): the quoting of each is
#: done once. Bounded, in case a program makes names on the fly.
_KEY_TEXT: dict[str, str] = {}
_KEY_TEXT_MAX = 4096


def dumps_keywords(kwargs: dict, owner: Any) -> str:
    """A persistent task's keyword arguments as JSON text: :func:`dumps` of ``kwargs``;
    NotPersistableError names the argument refused."""
    parts = []
    try:
        for key, value in kwargs.items():
            # Only a plain str is remembered: a subclass of str (Python allows one as a keyword
            # name) with the same text must still reach _encode, which refuses it.
            plain = type(key) is str
            head = _KEY_TEXT.get(key) if plain else None
            if head is None:
                head = "[" + _encode(key, 1) + ","
                if plain and len(_KEY_TEXT) < _KEY_TEXT_MAX:
                    _KEY_TEXT[key] = head
            kind = type(value)
            if kind is int:
                parts.append(f"{head}{value}]")
            elif kind is str:
                parts.append(head + _string(value) + "]")
            else:
                parts.append(head + _encode(value, 1) + "]")
    except (_Refused, RecursionError, ValueError):  # ValueError: an int too long to write
        return dumps(kwargs, "keyword arguments of", owner)
    return '{"d":[' + ",".join(parts) + "]}"


def dumps(value: Any, where: str, owner: Any = None) -> str:
    """``value`` as JSON text for the store, every container tagged with its type.

    Args:
        where: Names ``value`` in error messages (followed by the name of ``owner``, a
            callback, if given: only worked out when something is refused).

    Raises:
        NotPersistableError: ``value`` holds something the store cannot keep; the message says
            where in ``value`` it is.
    """
    try:
        return _encode(value)
    except (_Refused, RecursionError) as exc:  # RecursionError: a deep stack already
        if owner is not None:
            where = f"{where} {getattr(owner, '__qualname__', None) or repr(owner)}"
        if isinstance(exc, RecursionError):
            raise NotPersistableError(f"{where} cannot be stored: it is nested too deeply. "
                                      "Store plain, flatter data.") from None
        raise _explain(value, where) from None


def loads(text: str, get_object: Callable[[int], Any]) -> Any:
    """Inverse of :func:`dumps`, for one text (see :class:`Decoder` for many)."""
    return Decoder(get_object).loads(text)


# -- callbacks ---------------------------------------------------------------------------------

#: Module-level functions already checked, with their stored form and the Trust that allowed
#: them (checking imports the module and follows the name, which need not happen on every
#: delay()). Only plain functions go in: never a bound method, whatever it is bound to.
_CALLBACK_SPECS: dict[Any, tuple[str, str, dict, str, Trust]] = {}


def callback_text(callback: Any, trust: Trust) -> str:
    """The stored form of ``callback`` as JSON text; NotPersistableError if it has none."""
    try:
        cached = _CALLBACK_SPECS.get(callback)
    except TypeError:  # an unhashable callable: never cached
        cached = None
    if cached is not None:
        text, module, namespace, name, allowed_by = cached
        # Still that module's function under that name (`is`: a lookup that found an equal
        # but other callable proves nothing), and the module still trusted? A Trust's verdict
        # on a module never changes, so the Trust that allowed it needs no asking again.
        if namespace.get(name) is callback and (trust is allowed_by or trust.allows(module)):
            return text
    spec = encode_callback(callback, trust)
    text = json.dumps(spec, separators=(",", ":"))
    qualname = getattr(callback, "__qualname__", "")
    if "path" in spec and not hasattr(callback, "__self__") and "." not in qualname:
        module = sys.modules.get(callback.__module__)
        try:
            _CALLBACK_SPECS[callback] = (text, callback.__module__, vars(module), qualname,
                                         trust)
        except TypeError:  # an unhashable callable, or no module dict: checked every time
            pass
    return text


def encode_callback(callback: Any, trust: Trust) -> dict:
    """Describe ``callback`` by name: an import path, or a stored object's id and method name."""
    owner = getattr(callback, "__self__", None)
    name = getattr(callback, "__name__", None)
    if owner is not None and not isinstance(owner, type) and name is not None:
        if _is_game_object(owner):
            if owner.id is None or owner.deleted:
                raise NotPersistableError(
                    f"callback {callback!r} is a method of a deleted game object; a persistent "
                    "task can only call methods of objects that still exist")
            if not _is_method_name(type(owner), name):
                raise NotPersistableError(
                    f"callback {name!r} of {owner!r} is not a method defined on its class "
                    f"{type(owner).__qualname__}; define it on the class so it can be found "
                    "again after a reload")
            return {"obj": owner.id, "method": name}
        if type(owner).__module__ == "builtins":
            pass  # e.g. a builtin function; checked by import path below
        else:
            owner_kind = f"{type(owner).__module__}.{type(owner).__qualname__}"
            hint = ""
            if _is_command(owner):
                hint = (" A Command instance only lives while the command runs: move the "
                        "callback onto the character (a method of its typeclass) or into a "
                        "module-level function that takes the character as an argument.")
            raise NotPersistableError(
                f"callback {callback!r} is a method of a {owner_kind} instance, which the store "
                f"cannot find again after a reload.{hint} {_HOW_TO_FIX}.")
    if isinstance(callback, functools.partial):
        raise NotPersistableError(
            f"callback {callback!r} is a functools.partial, which has no import path. Name the "
            f"function itself as the callback ({_describe(callback.func)}) and pass the bound "
            "arguments to delay() along with the others.")
    module = getattr(callback, "__module__", None)
    qualname = getattr(callback, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        why = "lambdas, nested functions and functions of __main__ have no import path"
        raise NotPersistableError(
            f"callback {callback!r} cannot be stored: {why}. Use a function defined at the top "
            "level of an importable module (or a method of a stored game object), and pass "
            "what it needs as arguments.")
    if not trust.allows(module):
        raise NotPersistableError(f"callback {module}.{qualname} cannot be stored: "
                                  f"{trust.refusal(module)}.")
    if _is_evasync(module):
        raise NotPersistableError(f"callback {module}.{qualname} cannot be stored: "
                                  f"{_EVASYNC_CALLBACK}; store a function of your game that "
                                  "calls it instead.")
    try:
        found = resolve_path(module, qualname, trust)
    except LookupError:
        found = None
    # == rather than `is`: a classmethod gives a new bound method each time it is looked up.
    if found is not callback and found != callback:
        raise NotPersistableError(
            f"callback {callback!r} cannot be stored: importing {module}.{qualname} does not "
            "give back the same object. Use a function defined at the top level of an "
            "importable module.")
    return {"path": f"{module}:{qualname}"}


#: Why a task may not call evasync itself: its classes are named by the store only as
#: typeclasses and command sets (calling one, ``VirtualRuntime`` say, could replace the runtime).
_EVASYNC_CALLBACK = "a task's callback may not be one of evasync's own functions or classes"


def _is_evasync(module: str) -> bool:
    return module.partition(".")[0] == "evasync"


def _is_method_name(cls: type, name: str) -> bool:
    """True if ``name`` is a method a task may call on a stored object of class ``cls``: one
    its class defines, and not one of Python's ``__special__`` methods (``__setattr__``,
    ``__class__``, ``__init__``), which would act on the object itself."""
    return isinstance(name, str) and not (name.startswith("__") and name.endswith("__")) \
        and callable(getattr(cls, name, None))


def _is_command(owner: Any) -> bool:
    return any(cls.__name__ == "Command" and cls.__module__.startswith("evasync")
               for cls in type(owner).__mro__)


def resolve_path(module: str, qualname: str, trust: Trust,
                 failed_imports: dict[str, str] | None = None) -> Any:
    """Import ``module`` and follow ``qualname`` to a function or class *defined there*;
    LookupError with the reason if that fails.

    Nothing is imported from a module ``trust`` does not allow; the name may only pass
    through classes of the module (``Outer.Inner.method``), never through a module or an
    object it imported (``os.system`` reached through ``evasync.store``), and what it names
    must say it is that very name (its ``__module__`` and ``__qualname__``), which is what
    :func:`encode_callback` stores. evasync's own functions are not callbacks the store may
    name: only its classes (typeclasses, command sets) are.

    Args:
        failed_imports: Modules that already failed to import, with the reason (filled in):
            a module whose import raises is not run again for every row that names it.
    """
    if not isinstance(module, str) or not isinstance(qualname, str) or not module \
            or not qualname:
        raise LookupError(f"not a stored name: {module!r}:{qualname!r}")
    if not trust.allows(module):
        raise LookupError(trust.refusal(module))
    if failed_imports is not None and module in failed_imports:
        raise LookupError(failed_imports[module])
    try:
        target: Any = importlib.import_module(module)
    except Exception as exc:  # any import failure means "cannot be resolved"
        reason = f"module {module!r} does not import: {exc!r}"
        if failed_imports is not None:
            failed_imports[module] = reason
        raise LookupError(reason) from None
    parts = qualname.split(".")
    for index, part in enumerate(parts):
        if index and not (isinstance(target, type) and target.__module__ == module):
            raise LookupError(f"{module}:{qualname} does not name something defined in "
                              f"{module} ({'.'.join(parts[:index])} is not a class of it)")
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError(f"{module}:{qualname} not found ({part!r} missing)") from None
    if not callable(target):
        raise LookupError(f"{module}:{qualname} is not callable")
    if getattr(target, "__module__", None) != module or \
            getattr(target, "__qualname__", None) != qualname:
        raise LookupError(f"{module}:{qualname} is {target!r}, which is not defined there "
                          "under that name (a name the module imported from elsewhere)")
    if module.partition(".")[0] == "evasync" and not isinstance(target, type):
        raise LookupError(f"{module}:{qualname} is one of evasync's own functions, which the "
                          "store may not name; store a function of your game instead")
    return target


def importable(obj: Any) -> bool:
    """True if importing ``obj``'s module and following its qualname gives ``obj`` back."""
    module, qualname = obj.__module__, obj.__qualname__
    if module == "__main__" or "<" in qualname:
        return False
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:
        return False
    return target is obj


def resolve_name(name: str, trust: Trust) -> Any:
    """Resolve ``"package.module:Outer.Inner"`` (as stored) or ``"package.module.Name"``."""
    name = name.strip()
    if ":" in name:
        module, _, qualname = name.partition(":")
    else:
        module, _, qualname = name.rpartition(".")
    return resolve_path(module, qualname, trust)


def decode_callback(text: str, get_object: Callable[[int], Any], trust: Trust,
                    failed_imports: dict[str, str] | None = None) -> Any:
    """Inverse of :func:`callback_text`; LookupError (or ValueError for a damaged text) with a
    reason when it cannot be resolved (see :func:`resolve_path` for ``failed_imports``)."""
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"malformed stored callback {text!r}")
    if "path" in spec:
        module, _, qualname = str(spec["path"]).partition(":")
        if _is_evasync(module):
            raise LookupError(f"{module}:{qualname}: {_EVASYNC_CALLBACK}")
        return resolve_path(module, qualname, trust, failed_imports)
    owner = get_object(_object_id(spec["obj"]))
    if not _is_method_name(type(owner), spec["method"]):
        raise LookupError(f"{owner!r} has no method {spec['method']!r} that a task may call")
    return getattr(owner, spec["method"])
