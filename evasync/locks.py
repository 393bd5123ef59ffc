"""Lock strings such as ``"cmd:all()"`` or ``"cmd:perm(Builder) or superuser()"``.

A lock string is ``;``-separated ``access_type:expression`` parts; an expression combines lock
functions with ``and``, ``or`` and ``not``. Lock functions: ``all()``/``true()``, ``none()``/
``false()``, ``perm(Name)`` (the name or a higher one in :data:`PERMISSION_HIERARCHY`) and
``superuser()``. Anything else is a :class:`LockError` when the lock string is parsed, so a typo
never silently lets everyone in.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

from .errors import EvasyncError

#: Lowest to highest; a permission implies every one before it.
PERMISSION_HIERARCHY = ("player", "helper", "builder", "admin", "developer")


class LockError(EvasyncError, ValueError):
    """A lock string could not be parsed (unknown function, bad syntax)."""


def _perm(obj: Any, name: str) -> bool:
    if is_superuser(obj):
        return True
    held = {p.lower() for p in permissions(obj)}
    wanted = name.lower()
    if wanted in held:
        return True
    if wanted in PERMISSION_HIERARCHY:
        rank = PERMISSION_HIERARCHY.index(wanted)
        return any(p in PERMISSION_HIERARCHY and PERMISSION_HIERARCHY.index(p) >= rank
                   for p in held)
    return False


def permissions(obj: Any) -> list[str]:
    """The permission names an object holds (its ``db.permissions``: a list, or one name)."""
    db = getattr(obj, "db", None)
    held = getattr(db, "permissions", None) if db is not None else None
    if isinstance(held, str):  # ``obj.db.permissions = "Builder"`` means one permission
        return [held]
    return list(held or [])


def is_superuser(obj: Any) -> bool:
    """True if the object is marked superuser (``db.superuser``)."""
    db = getattr(obj, "db", None)
    return bool(db is not None and getattr(db, "superuser", None))


def allow_all(obj: Any) -> bool:
    """The compiled form of every lock that lets everyone in (``all()``, ``true()``, ...)."""
    return True


def _deny_all(obj: Any) -> bool:
    return False


_FUNCS: dict[str, tuple[int, Callable[..., bool]]] = {
    "all": (0, allow_all),
    "true": (0, allow_all),
    "none": (0, _deny_all),
    "false": (0, _deny_all),
    "superuser": (0, is_superuser),
    "perm": (1, _perm),
}

_CALL = re.compile(r"^(not\s+)?([a-z_]+)\(\s*([^()]*?)\s*\)$", re.IGNORECASE)


def _compile_call(text: str, lockstring: str) -> Callable[[Any], bool]:
    match = _CALL.match(text.strip())
    if not match:
        raise LockError(f"lock {lockstring!r}: cannot read {text.strip()!r}; expected "
                        "something like all() or perm(Builder)")
    negate, name, arg = match.groups()
    if name.lower() not in _FUNCS:
        raise LockError(f"lock {lockstring!r}: unknown lock function {name!r}; known: "
                        f"{', '.join(sorted(_FUNCS))}")
    arity, func = _FUNCS[name.lower()]
    args = [arg] if arg else []
    if len(args) != arity:
        raise LockError(f"lock {lockstring!r}: {name}() takes {arity} argument(s)")
    if arity:
        func = functools.partial(func, name=args[0])
    if negate:
        if func is allow_all or func is _deny_all:
            return _deny_all if func is allow_all else allow_all
        return lambda obj: not func(obj)
    return func


def _all_of(terms: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if _deny_all in terms:
        return _deny_all
    terms = [t for t in terms if t is not allow_all]
    if not terms:
        return allow_all
    if len(terms) == 1:
        return terms[0]
    return lambda obj: all(t(obj) for t in terms)


def _any_of(alternatives: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if allow_all in alternatives:
        return allow_all
    alternatives = [a for a in alternatives if a is not _deny_all]
    if not alternatives:
        return _deny_all
    if len(alternatives) == 1:
        return alternatives[0]
    return lambda obj: any(a(obj) for a in alternatives)


def parse_locks(lockstring: str) -> dict[str, Callable[[Any], bool]]:
    """Compile a lock string into ``{access_type: check(obj) -> bool}``; LockError if invalid.

    Checks are compiled once, here, with constant parts folded away: a check that lets everyone
    in is always the same function, which the command handler skips without calling it.
    """
    if not isinstance(lockstring, str):
        raise LockError(f"locks must be a string, not {lockstring!r}")
    locks: dict[str, Callable[[Any], bool]] = {}
    for part in filter(None, (p.strip() for p in lockstring.split(";"))):
        access, sep, expression = part.partition(":")
        if not sep or not access.strip() or not expression.strip():
            raise LockError(f"lock {lockstring!r}: {part!r} is not of the form type:expression")
        alternatives = []
        for alternative in re.split(r"\s+or\s+", expression.strip()):
            terms = [_compile_call(t, lockstring) for t in re.split(r"\s+and\s+", alternative)]
            alternatives.append(_all_of(terms))
        locks[access.strip().lower()] = _any_of(alternatives)
    return locks
