"""Stored game objects: just enough of a typeclass system for delays, commands and players.

An object's row (typeclass path and key) and its ``db`` attributes live in the store; ``ndb`` and
connected sessions live only in memory and are gone after a reload. Objects come back as their
own class: the typeclass is any importable subclass of :class:`DefaultObject`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Protocol

from twisted.logger import Logger

from . import _codec
from .errors import ObjectDeletedError

if TYPE_CHECKING:
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


class AttributeHandler:
    """``obj.db``: attributes saved in the store at assignment. A missing one reads None.

    Values follow the same rules as persistent task arguments (plain data and stored objects).
    Mutating a stored list or dict in place does not save it: assign it again.
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
            object.__setattr__(self, "_cache",
                               {name: _codec.loads(text, objects.get) for name, text in raw.items()})
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._values().get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        obj = self._obj
        text = _codec.dumps(value, f"attribute {name!r} of {obj!r}")
        obj._runtime.store.set_attribute(obj._live_id(), name, text)
        self._values()[name] = value

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

    A typeclass may list command sets (classes or import paths) that every object of the class
    has, in ``default_cmdsets``.

    Attributes:
        id: The object's id in the store (never reused).
        ndb: In-memory attributes (:class:`NAttributeHandler`).
        db: Stored attributes (:class:`AttributeHandler`).
        sessions: The connected sessions that :meth:`msg` writes to.
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
    def cmdset(self) -> Any:
        """The object's :class:`~evasync.commands.CmdSetHandler`: ``obj.cmdset.add(MyCmdSet)``."""
        if self._cmdset is None:
            from .commands import CmdSetHandler

            self._cmdset = CmdSetHandler(self)
        return self._cmdset

    def execute_cmd(self, raw_string: str, session: Any = None) -> Any:
        """Handle one line of input from this object's player.

        The line answers the oldest question a generator is waiting on for this object, if any;
        otherwise the command it names is found in the object's cmdsets and run. An unknown
        command gets a helpful reply; an exception is logged and reported in one short line.

        Returns:
            A Deferred that fires when the command has finished (after any pauses).
        """
        from .cmdhandler import execute_cmd

        return execute_cmd(self, raw_string, session=session)

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
            cls = _codec.resolve_name(path)
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
            cls = _codec.resolve_name(typeclass)
        else:
            cls = typeclass
        if not (isinstance(cls, type) and issubclass(cls, DefaultObject)):
            raise TypeError(f"typeclass must be a subclass of evasync.DefaultObject, not {cls!r}")
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
