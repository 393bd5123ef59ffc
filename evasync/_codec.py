"""Turn callbacks and plain data into JSON for the store, and back, without pickle.

Every container is tagged so that types survive the round trip: a tuple stays a tuple, a set a
set, and dict keys keep their types. Stored game objects travel as references by id. Anything
else is refused with :class:`~evasync.errors.NotPersistableError` naming what was refused.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
from typing import Any, Callable

from .errors import NotPersistableError

_SCALARS = (type(None), bool, int, float, str)

#: One compact encoder for every value (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))

_HOW_TO_FIX = (
    "persistent tasks can store module-level functions, methods of stored game objects, plain "
    "data (numbers, strings, bytes, None, bools and lists/tuples/dicts/sets of those) and stored "
    "game objects"
)


def _is_game_object(value: Any) -> bool:
    return getattr(type(value), "_evasync_game_object", False)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (type {type(value).__module__}.{type(value).__qualname__})"


def encode(value: Any, where: str) -> Any:
    """Return a JSON-ready form of ``value``; ``where`` names it in error messages."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if kind is tuple:
        return {"t": [encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if kind is set or kind is frozenset:
        tag = "s" if kind is set else "f"
        return {tag: [encode(item, f"{where} item") for item in value]}
    if kind is dict:
        return {"d": [[encode(k, f"{where} key {k!r}"), encode(v, f"{where}[{k!r}]")]
                      for k, v in value.items()]}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode("ascii")}
    if _is_game_object(value):
        if value.id is None or value.deleted:
            raise NotPersistableError(
                f"{where} is the deleted game object {value!r}; a persistent task can only "
                "refer to objects that still exist")
        return {"o": value.id}
    if callable(value):
        hint = ("pass the data the function needs instead, and name the function as the "
                "task's callback")
    else:
        hint = "convert it to plain data (for example a dict of its fields) before storing it"
    raise NotPersistableError(f"{where} cannot be stored: {_describe(value)}. {_HOW_TO_FIX}; {hint}.")


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
        return self._json.decode(text)

    def _untag(self, data: dict) -> Any:
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
            return self._get_object(body)
        raise ValueError(f"unknown tag {tag!r} in stored data")


def dumps(value: Any, where: str) -> str:
    """:func:`encode` ``value`` as JSON text; ``where`` names it in error messages."""
    try:
        return _ENCODER.encode(encode(value, where))
    except RecursionError:
        raise NotPersistableError(f"{where} cannot be stored: it contains itself or is nested too "
                                  "deeply. Store plain, tree-shaped data.") from None


def loads(text: str, get_object: Callable[[int], Any]) -> Any:
    """Inverse of :func:`dumps`, for one text (see :class:`Decoder` for many)."""
    return Decoder(get_object).loads(text)


# -- callbacks ---------------------------------------------------------------------------------

def encode_callback(callback: Any) -> dict:
    """Describe ``callback`` by name: an import path, or a stored object's id and method name."""
    owner = getattr(callback, "__self__", None)
    name = getattr(callback, "__name__", None)
    if owner is not None and not isinstance(owner, type) and name is not None:
        if _is_game_object(owner):
            if owner.id is None or owner.deleted:
                raise NotPersistableError(
                    f"callback {callback!r} is a method of a deleted game object; a persistent "
                    "task can only call methods of objects that still exist")
            if not callable(getattr(type(owner), name, None)):
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
    try:
        found = resolve_path(module, qualname)
    except LookupError:
        found = None
    # == rather than `is`: a classmethod gives a new bound method each time it is looked up.
    if found is not callback and found != callback:
        raise NotPersistableError(
            f"callback {callback!r} cannot be stored: importing {module}.{qualname} does not "
            "give back the same object. Use a function defined at the top level of an "
            "importable module.")
    return {"path": f"{module}:{qualname}"}


def _is_command(owner: Any) -> bool:
    return any(cls.__name__ == "Command" and cls.__module__.startswith("evasync")
               for cls in type(owner).__mro__)


def resolve_path(module: str, qualname: str) -> Any:
    """Import ``module`` and follow ``qualname``; LookupError with the reason if that fails."""
    try:
        target: Any = importlib.import_module(module)
    except Exception as exc:  # any import failure means "cannot be resolved"
        raise LookupError(f"module {module!r} does not import: {exc!r}") from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError(f"{module}:{qualname} not found ({part!r} missing)") from None
    if not callable(target):
        raise LookupError(f"{module}:{qualname} is not callable")
    return target


def importable(obj: Any) -> bool:
    """True if importing ``obj``'s module and following its qualname gives ``obj`` back."""
    module, qualname = obj.__module__, obj.__qualname__
    if module == "__main__" or "<" in qualname:
        return False
    try:
        return resolve_path(module, qualname) is obj
    except LookupError:
        return False


def resolve_name(name: str) -> Any:
    """Resolve ``"package.module:Outer.Inner"`` (as stored) or ``"package.module.Name"``."""
    name = name.strip()
    if ":" in name:
        module, _, qualname = name.partition(":")
    else:
        module, _, qualname = name.rpartition(".")
    return resolve_path(module, qualname)


def decode_callback(spec: dict, get_object: Callable[[int], Any]) -> Any:
    """Inverse of :func:`encode_callback`; LookupError with a reason when it cannot be resolved."""
    if "path" in spec:
        module, _, qualname = spec["path"].partition(":")
        return resolve_path(module, qualname)
    owner = get_object(spec["obj"])
    method = getattr(owner, spec["method"], None)
    if not callable(method):
        raise LookupError(f"{owner!r} has no method {spec['method']!r}")
    return method
