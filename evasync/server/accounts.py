"""Player accounts: a name, a password (stored as a salted scrypt hash) and a character.

Hashing is deliberately slow (tens of milliseconds and 16 MiB each), so it runs in a thread pool
of its own (:class:`HashPool`): :data:`HASH_THREADS` hashes at once, at most :data:`HASH_QUEUE`
waiting, and a clear refusal beyond that, so a flood of logins neither freezes the other
players nor grows the memory without bound. The first account made is the superuser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from .. import _codec
from ..objects import DefaultObject

if TYPE_CHECKING:
    from ..runtime import Runtime

log = Logger(namespace="evasync.server.accounts")

#: scrypt cost: n=2**14, r=8, p=1 (16 MiB, the parameters Python's documentation suggests).
_N, _R, _P = 2 ** 14, 8, 1
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,19}$")
MIN_PASSWORD = 8
#: Names nobody may take; refused with the same words as a name that is taken.
RESERVED = frozenset({"root", "superuser", "system", "server", "evasync", "nobody", "everyone",
                      "staff", "moderator"})
#: Hashes at once: half the cores (at least one), so that logins never take every core from
#: the game and the portal.
HASH_THREADS = max(1, (os.cpu_count() or 2) // 2)
HASH_QUEUE = 64
#: The typeclass of new characters unless the server is started with ``--typeclass``.
CHARACTER_TYPECLASS = "evasync.server.characters:Character"


def hash_password(password: str) -> str:
    """A new salted hash of ``password``: ``scrypt$n$r$p$salt$hash`` (base64 parts)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P)
    return "$".join(["scrypt", str(_N), str(_R), str(_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the ``stored`` hash (compared in constant time)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                                n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


#: Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = hash_password("not a real password")


def typeclass_package(path: str) -> str:
    """The top-level package of a typeclass path: naming a typeclass to the server trusts it
    (the store may then name its functions, typeclasses and command sets)."""
    return path.strip().split(":")[0].split(".")[0]


def check_typeclass(path: str) -> str | None:
    """Why ``path`` (``"package.module:Class"``) cannot be the typeclass of new characters, or
    None if it can."""
    try:
        cls = _codec.resolve_name(path, _codec.Trust([typeclass_package(path)]))
    except LookupError as exc:
        return (f"the character typeclass {path!r} cannot be used: {exc}. Install your game "
                "into this Python environment (pip install -e path/to/game) or start the "
                "server in the folder that holds its package.")
    if not (isinstance(cls, type) and issubclass(cls, DefaultObject)):
        return (f"the character typeclass {path!r} is {cls!r}, not a typeclass: make it a "
                "subclass of evasync.DefaultCharacter")
    return None


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be an account name, or None if it can."""
    if not NAME.match(name):
        return ("A name is 2 to 20 letters, digits, '-' or '_', starting with a letter "
                f"(not {name!r}).")
    return None


class Busy(Exception):
    """Too many passwords wait to be hashed: the request is refused (try again later)."""


class HashPool:
    """Password hashing off the reactor: ``threads`` at a time, at most ``queue`` in all.

    Args:
        reactor: Where results are delivered; the pool stops when it shuts down.
    """

    def __init__(self, reactor: Any, threads: int = HASH_THREADS, queue: int = HASH_QUEUE) -> None:
        self._reactor = reactor
        self.queue = queue
        self.pending = 0
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="evasync-hash")
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)

    def run(self, func: Any, *args: Any) -> defer.Deferred:
        """``func(*args)`` in a worker thread; raises :class:`Busy` if the queue is full."""
        if self.pending >= self.queue:
            raise Busy(f"{self.pending} password hashes are waiting")
        self.pending += 1
        done = threads.deferToThreadPool(self._reactor, self._pool, func, *args)
        done.addBoth(self._finished)
        return done

    def _finished(self, result: Any) -> Any:
        self.pending -= 1
        return result


class Accounts:
    """The accounts in a runtime's store, hashed in ``pool``; new characters are of class
    ``typeclass``."""

    def __init__(self, runtime: "Runtime", pool: HashPool,
                 typeclass: str = CHARACTER_TYPECLASS) -> None:
        self._runtime = runtime
        self._pool = pool
        self.typeclass = typeclass
        #: Set when the game stops: a hash finishing after that touches nothing.
        self.closed = False

    def available(self, name: str) -> bool:
        """Whether ``name`` may be taken: not reserved, no account has it."""
        return name.lower() not in RESERVED and self._runtime.store.account(name) is None

    @defer.inlineCallbacks
    def create(self, name: str, password: str) -> Any:
        """Make an account and its character; fires with the character, or None if the name
        was taken meanwhile. The first account's character is the superuser. Fails at once
        with :class:`Busy` if the hash queue is full."""
        hashed = yield self._pool.run(hash_password, password)
        store = self._runtime.store
        if self.closed or store.account(name) is not None:
            return None
        first = store.count_accounts() == 0
        character = self._runtime.objects.create(self.typeclass, key=name)
        if not store.create_account(name, hashed, character.id, self._runtime.reactor.seconds()):
            character.delete()
            return None
        if first:
            character.db.superuser = True
        log.info("account {name} created (character #{id}{su})", name=name, id=character.id,
                 su=", superuser" if first else "")
        return character

    @defer.inlineCallbacks
    def authenticate(self, name: str, password: str) -> Any:
        """Fires with the account's character, or None if the name or password is wrong.
        Fails at once with :class:`Busy` if the hash queue is full."""
        row = self._runtime.store.account(name)
        stored = row[1] if row is not None else _DUMMY
        ok = yield self._pool.run(check_password, password, stored)
        if self.closed or not ok or row is None:
            return None
        try:
            return self._runtime.objects.get(row[2])
        except LookupError:
            log.warn("account {name}: its character #{id} is gone", name=row[0], id=row[2])
            return None
