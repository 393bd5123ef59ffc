"""Stored game objects: just enough of a typeclass system for delays, commands and players.

An object's row (typeclass path and key) and its ``db`` attributes live in the store; ``ndb`` and
connected sessions live only in memory and are gone after a reload. Objects come back as their
own class: the typeclass is any importable subclass of :class:`DefaultObject`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from . import _codec
from . import cmdhandler
from .errors import ObjectDeletedError

if TYPE_CHECKING:
    from .commands import CmdSetHandler
    from .runtime import Runtime

log = Logger(namespace="evasync.objects")


class Session(Protocol):
    """Anything that can show text to a player: a telnet connection, a test recorder..."""

    def send(self, text: str) -> None: ...


class NAttributeHandler:
    """``obj.ndb``: in-memory attributes. A missing one reads None; deleting one is always safe."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop(name, None)

    def all(self) -> dict[str, Any]:
        """A copy of every in-memory attribute."""
        return dict(self.__dict__)


class _Root:
    """One ``db`` attribute whose value holds saving containers: what they save when changed."""

    __slots__ = ("handler", "name", "value")

    def __init__(self, handler: "AttributeHandler", name: str) -> None:
        self.handler = handler
        self.name = name
        self.value: Any = None

    def save(self) -> None:
        # A container of an attribute that was since assigned anew or deleted saves nothing.
        if self.handler._values().get(self.name, _MISSING) is self.value:
            self.handler._save(self.name)


_MISSING = object()


class _Saving:
    """What the ``db`` containers share: the attribute they belong to, saved on every change."""

    __slots__ = ()
    _root: _Root | None

    def _saved(self, undo: Callable[[], None]) -> None:
        if self._root is None:
            return
        try:
            self._root.save()
        except BaseException:
            undo()  # what could not be stored is not kept in memory either
            raise


def _mutator(base: type, method: str) -> Callable[..., Any]:
    original = getattr(base, method)

    def restore(container: Any, before: Any) -> None:
        if base is list:
            list.__setitem__(container, slice(None), before)
        else:
            base.clear(container)
            base.update(container, before)

    @functools.wraps(original)
    def change(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = base(self)
        result = original(self, *args, **kwargs)
        if result is NotImplemented:  # set |= list: Python goes on to raise its TypeError
            return result
        self._adopt()
        self._saved(lambda: restore(self, before))
        if method == "setdefault":
            return self[args[0]]  # the saving container now in the dict, not the default given
        return self if method.startswith("__i") else result

    return change


class SaverList(_Saving, list):
    """A list stored in ``db``: changing it in place (``append``, ``obj.db.x[0] = 1``...)
    saves the attribute it belongs to, as Evennia's ``db`` lists do."""

    __slots__ = ("_root",)

    def __init__(self, items: Any = (), root: _Root | None = None) -> None:
        self._root = root
        super().__init__(_wrap(item, root) for item in items)

    def _adopt(self) -> None:
        for index, item in enumerate(self):
            wrapped = _wrap(item, self._root)
            if wrapped is not item:
                list.__setitem__(self, index, wrapped)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (list, (list(self),))


class SaverDict(_Saving, dict):
    """A dict stored in ``db``: changing it in place saves the attribute it belongs to."""

    __slots__ = ("_root",)

    def __init__(self, items: Any = (), root: _Root | None = None) -> None:
        self._root = root
        super().__init__((key, _wrap(value, root)) for key, value in dict(items).items())

    def _adopt(self) -> None:
        for key, value in self.items():
            wrapped = _wrap(value, self._root)
            if wrapped is not value:
                dict.__setitem__(self, key, wrapped)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (dict, (dict(self),))


class SaverSet(_Saving, set):
    """A set stored in ``db``: changing it in place saves the attribute it belongs to."""

    __slots__ = ("_root",)

    def __init__(self, items: Any = (), root: _Root | None = None) -> None:
        self._root = root
        super().__init__(items)

    def _adopt(self) -> None:
        pass  # set members are hashable, hence never mutable containers

    def __repr__(self) -> str:
        return set.__repr__(set(self))  # {'a'}, as a set prints: a player may read it

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (set, (set(self),))


for _base, _cls, _methods in (
        (list, SaverList, ("append", "extend", "insert", "remove", "pop", "clear", "sort",
                           "reverse", "__setitem__", "__delitem__", "__iadd__", "__imul__")),
        (dict, SaverDict, ("__setitem__", "__delitem__", "pop", "popitem", "clear", "update",
                           "setdefault", "__ior__")),
        (set, SaverSet, ("add", "discard", "remove", "pop", "clear", "update",
                         "difference_update", "intersection_update",
                         "symmetric_difference_update", "__ior__", "__iand__", "__isub__",
                         "__ixor__"))):
    for _method in _methods:
        setattr(_cls, _method, _mutator(_base, _method))
    _codec.PLAIN_ALIASES[_cls] = _base

_SAVERS = {list: SaverList, dict: SaverDict, set: SaverSet, SaverList: SaverList,
           SaverDict: SaverDict, SaverSet: SaverSet}


def _wrap(value: Any, root: _Root | None) -> Any:
    """``value`` with its lists, dicts and sets (nested ones too, in tuples as well) made into
    containers that save ``root`` when changed: copies, except those already saving ``root``."""
    kind = type(value)
    saver = _SAVERS.get(kind)
    if saver is not None:
        if kind is saver and value._root is root:
            return value
        return saver(value, root)
    if kind is tuple:
        items = tuple(_wrap(item, root) for item in value)
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _stored(handler: "AttributeHandler", name: str, value: Any) -> Any:
    root = _Root(handler, name)
    root.value = _wrap(value, root)
    return root.value


def _object_or_none(get: Callable[[int], Any]) -> Callable[[int], Any]:
    """An object lookup for ``db`` values: a deleted object reads None, as in Evennia."""
    def lookup(obj_id: int) -> Any:
        try:
            return get(obj_id)
        except LookupError:
            return None
    return lookup


class AttributeHandler:
    """``obj.db``: attributes saved in the store. A missing one reads None.

    Values follow the same rules as persistent task arguments (plain data and stored objects).
    Assigning stores a copy. Lists, dicts and sets read back from ``db`` (nested ones too) save
    themselves when changed in place, as in Evennia: ``obj.db.items.append("key")`` is stored.
    A stored object that was deleted since reads back as None, as in Evennia.
    """

    def __init__(self, obj: "DefaultObject") -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_cache", None)

    def _values(self) -> dict[str, Any]:
        self._obj._live_id()  # a deleted object has no attributes left to read
        if self._cache is None:
            obj = self._obj
            objects = obj._runtime.objects
            raw = obj._runtime.store.attributes(obj._live_id())
            decoder = _codec.Decoder(_object_or_none(objects.get))
            values = {}
            for name, text in raw.items():
                try:
                    values[name] = _stored(self, name, decoder.loads(text))
                except Exception as exc:  # one damaged attribute must not hide the others
                    log.error("{obj}: stored attribute {name!r} cannot be read ({error}); it "
                              "reads None", obj=repr(obj), name=name, error=repr(exc))
            object.__setattr__(self, "_cache", values)
        return self._cache

    def _save(self, name: str) -> None:
        obj = self._obj
        text = _codec.dumps(self._values()[name], f"attribute {name!r} of {obj!r}")
        obj._runtime.store.set_attribute(obj._live_id(), name, text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._values().get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        obj = self._obj
        text = _codec.dumps(value, f"attribute {name!r} of {obj!r}")
        obj._runtime.store.set_attribute(obj._live_id(), name, text)
        self._values()[name] = _stored(self, name, value)

    def __delattr__(self, name: str) -> None:
        obj = self._obj
        obj._runtime.store.delete_attribute(obj._live_id(), name)
        self._values().pop(name, None)

    def get(self, name: str, default: Any = None) -> Any:
        """The attribute's value, or ``default`` if it was never set."""
        return self._values().get(name, default)

    def all(self) -> dict[str, Any]:
        """A copy of every stored attribute."""
        return dict(self._values())


class DefaultObject:
    """Base typeclass of every stored object. Make one with :func:`evasync.create_object`.

    Attributes:
        default_cmdsets: The command sets every object of this class has: CmdSet classes, or
            import paths (``"module:Class"`` or ``"module.Class"``) of trusted modules. A class
            attribute, never stored: each time an object is created or loaded, its
            :attr:`cmdset` starts with these, in this order, then the sets stored with
            ``persistent=True``; sets added later with ``add()`` go after them, and later sets
            override earlier ones. A set that cannot be loaded is logged and left out.
        id: The object's id in the store (never reused).
        ndb: In-memory attributes (:class:`NAttributeHandler`).
        db: Stored attributes (:class:`AttributeHandler`).
        sessions: The connected sessions that :meth:`msg` writes to.
        deleted: True once the object is deleted; reading or writing its ``db`` or renaming it
            then raises :class:`~evasync.ObjectDeletedError`.
    """

    _evasync_game_object = True
    default_cmdsets: tuple = ()

    def __init__(self, runtime: "Runtime", obj_id: int, key: str) -> None:
        self._runtime = runtime
        self.id = obj_id
        self._key = key
        self.deleted = False
        self.ndb = NAttributeHandler()
        self.db = AttributeHandler(self)
        self.sessions: list[Session] = []
        self._cmdset: Any = None

    def __repr__(self) -> str:
        gone = " (deleted)" if self.deleted else ""
        return f"<{type(self).__name__} {self._key!r} #{self.id}{gone}>"

    def __str__(self) -> str:
        return self._key

    def _live_id(self) -> int:
        if self.deleted:
            raise ObjectDeletedError(f"{self!r} has been deleted")
        return self.id

    @property
    def dbref(self) -> str:
        """The object's id as ``"#N"``."""
        return f"#{self.id}"

    @property
    def key(self) -> str:
        """The object's name (stored)."""
        return self._key

    @key.setter
    def key(self, value: str) -> None:
        self._runtime.store.set_object_key(self._live_id(), str(value))
        self._key = str(value)

    def at_object_creation(self) -> None:
        """Hook called once, when the object is first created. Set ``db`` defaults here."""

    def msg(self, text: Any = None, from_obj: Any = None, session: Any = None,
            **kwargs: Any) -> None:
        """Send ``text`` to the object's connected sessions (or only to ``session``).

        With nobody connected the text is dropped, as a message to an empty room would be.
        Upstream's ``(text, options)`` tuples are accepted; the options are ignored.
        """
        if text is None:
            return
        if isinstance(text, tuple):
            text = text[0]
        text = str(text)
        for target in ([session] if session is not None else list(self.sessions)):
            target.send(text)

    @property
    def cmdset(self) -> CmdSetHandler:
        """The command sets on this object, as a :class:`~evasync.CmdSetHandler` made at first
        use (``obj.cmdset.add(MyCmdSet)``)."""
        if self._cmdset is None:
            from .commands import CmdSetHandler

            self._cmdset = CmdSetHandler(self)
        return self._cmdset

    def execute_cmd(self, raw_string: str, session: Any = None) -> Deferred:
        """Handle one line of input from this object's player.

        The line answers the oldest question a generator is waiting on for this object, if any;
        otherwise the command it names is found in the object's cmdsets and run. An unknown
        command gets a helpful reply; an exception is logged and reported in one short line.

        Returns:
            A Deferred that fires when the command has finished (after any pauses).
        """
        return cmdhandler.execute_cmd(self, raw_string, session=session)

    def delete(self) -> bool:
        """Delete the object and its attributes. True if it existed; False if already deleted."""
        if self.deleted:
            return False
        self._runtime.objects._delete(self)
        return True


class DefaultCharacter(DefaultObject):
    """The default typeclass of :func:`evasync.create_object`: something a player controls."""


def typeclass_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class ObjectRegistry:
    """A runtime's stored objects, one Python instance per id (an identity map)."""

    def __init__(self, runtime: "Runtime") -> None:
        self._runtime = runtime
        self._cache: dict[int, DefaultObject] = {}
        #: Callables run with each object just before it is deleted (used to close its waits).
        self.on_delete: list[Any] = []

    def _resolve_class(self, path: str, obj_id: int) -> type:
        try:
            cls = _codec.resolve_name(path, self._runtime.trust)
        except LookupError as exc:
            log.warn("object #{obj_id}: typeclass {path} not found ({reason}); using "
                     "DefaultObject", obj_id=obj_id, path=path, reason=str(exc))
            return DefaultObject
        if not (isinstance(cls, type) and issubclass(cls, DefaultObject)):
            log.warn("object #{obj_id}: {path} is not a DefaultObject subclass; using "
                     "DefaultObject", obj_id=obj_id, path=path)
            return DefaultObject
        return cls

    def create(self, typeclass: type | str | None = None, key: str | None = None) -> DefaultObject:
        """Create and store a new object; see :func:`evasync.create_object`."""
        if typeclass is None:
            cls: type = DefaultCharacter
        elif isinstance(typeclass, str):
            try:
                cls = _codec.resolve_name(typeclass, self._runtime.trust)
            except LookupError as exc:
                raise TypeError(f"typeclass {typeclass!r} cannot be used: {exc}") from None
        else:
            cls = typeclass
        if not (isinstance(cls, type) and issubclass(cls, DefaultObject)):
            raise TypeError(f"typeclass must be a subclass of evasync.DefaultObject, not {cls!r}")
        if not self._runtime.trust.allows(cls.__module__):
            raise TypeError(f"typeclass {cls.__qualname__} cannot be stored: "
                            f"{self._runtime.trust.refusal(cls.__module__)}")
        path = typeclass_path(cls)
        if not _codec.importable(cls):
            raise TypeError(f"typeclass {cls!r} must be importable by its module path so it can "
                            "be found again after a reload; define it at the top level of a module")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a string, not {key!r}")
        store = self._runtime.store
        obj_id = store.create_object(path, key or "")
        if not key:
            key = f"{cls.__name__}#{obj_id}"
            store.set_object_key(obj_id, key)
        obj = cls(self._runtime, obj_id, key)
        self._cache[obj_id] = obj
        obj.at_object_creation()
        return obj

    def get(self, obj_id: int | str) -> DefaultObject:
        """The object with this id (or ``"#N"`` dbref); LookupError if there is none."""
        if isinstance(obj_id, str) and obj_id.startswith("#"):
            obj_id = obj_id[1:]
        try:
            obj_id = int(obj_id)
        except (TypeError, ValueError):
            raise LookupError(f"not an object id: {obj_id!r}") from None
        obj = self._cache.get(obj_id)
        if obj is not None:
            return obj
        row = self._runtime.store.object_row(obj_id)
        if row is None:
            raise LookupError(f"object #{obj_id} does not exist (deleted?)")
        path, key = row
        obj = self._resolve_class(path, obj_id)(self._runtime, obj_id, key)
        self._cache[obj_id] = obj
        return obj

    def search(self, key: str) -> list[DefaultObject]:
        """Objects whose key is ``key`` (case-insensitive), oldest first."""
        return [self.get(obj_id) for obj_id in self._runtime.store.find_objects(key)]

    def loaded(self) -> Iterable[DefaultObject]:
        """The objects currently in memory."""
        return list(self._cache.values())

    def _delete(self, obj: DefaultObject) -> None:
        # `obj` may be an instance from before a reload: delete the live one along with it.
        live = self._cache.pop(obj.id, obj)
        for instance in {id(i): i for i in (live, obj)}.values():
            for hook in list(self.on_delete):
                hook(instance)
        self._runtime.store.delete_object(obj.id)
        for instance in (live, obj):
            instance.deleted = True
            instance.sessions.clear()
