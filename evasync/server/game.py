"""The game process: a runtime on the real reactor, the store, and the players' commands.

It holds no socket of its own: the portal owns the connections and passes their lines in (see
:mod:`evasync.server.protocol`). A reload is this process exiting and a fresh one, with the
code read again from disk, taking over the portal's connections. Started by the portal as
``python -m evasync.server.game``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections import Counter
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp

from ..errors import StoreError
from ..runtime import Runtime, set_runtime
from ..store import Store
from .accounts import (CHARACTER_TYPECLASS, MIN_PASSWORD, Accounts, Busy, HashPool, check_name,
                       typeclass_package)
from .clock import ScaledClock
from .limits import Backoff, Window
from .logs import start_logging
from .protocol import EXIT_BAD_STORE, Hello, Outbox, Reload, Shutdown, ToGame, ToPortal

log = Logger(namespace="evasync.server.game")

BANNER = """\
Welcome to the evasync demo server!
  create <name> <password>    make a character (the first one made is the superuser)
  connect <name> <password>   play a character you made before
  quit                        leave"""

#: Failed logins a connection may make before it is closed.
MAX_FAILURES = 10
#: Failed logins per address and per account name before each retry must wait: FIRST_WAIT
#: seconds, doubling with each failure up to MAX_WAIT; forgotten after FORGET_FAILURES seconds.
FREE_FAILURES, FIRST_WAIT, MAX_WAIT, FORGET_FAILURES = 3, 2.0, 60.0, 900.0
#: Accounts an address may ask for (made or refused for the name) in CREATE_PERIOD seconds.
CREATES_PER_ADDRESS, CREATE_PERIOD = 5, 600.0

NOT_AVAILABLE = "The name {name!r} is not available; pick another."
CHECKING = ("Other logins with that name or from your address are being checked; try again in "
            "a moment.")
BUSY = "The server is busy checking other passwords; try again in a few seconds."
#: Told to a connection whose create or connect was still being checked when the game stopped
#: (for a reload, or for good): the check's answer is dropped, and nothing was made.
UNFINISHED = ("The game stopped before your {word} was checked, so nothing was done. Send it "
              "again once the server is back.")


class GameSession:
    """One connection as the game sees it; what a character's ``sessions`` list holds."""

    def __init__(self, game: "Game", sid: int, address: str) -> None:
        self.game = game
        self.sid = sid
        self.address = address
        self.host = address.rpartition(":")[0] or address
        self.character: Any = None
        self.failures = 0
        #: The login word ("create" or "connect") being checked for this connection, or "".
        self.busy = ""

    def __repr__(self) -> str:
        return f"<GameSession {self.sid} {self.address} {self.character!r}>"

    def send(self, text: str) -> None:
        """Show ``text`` to this connection's player."""
        self.game.outbox.put("send", self.sid, str(text))

    def close(self, text: str | None = None) -> None:
        """Say ``text`` and close the connection."""
        if text:
            self.send(text)
        self.game.outbox.put("close", self.sid)


class Game:
    """The game logic of one process: sessions, logins, commands.

    Commands reach it through their session (``GameSession.game``).

    Args:
        runtime: The runtime (already current) whose store holds the accounts.
        exempt: Addresses not held to the per-address limits.
        typeclass: The typeclass of new characters (``"package.module:Class"``).
    """

    def __init__(self, runtime: Runtime, exempt: Any = (),
                 typeclass: str = CHARACTER_TYPECLASS) -> None:
        self.runtime = runtime
        reactor = runtime.reactor
        self.accounts = Accounts(runtime, HashPool(reactor), typeclass)
        self.exempt = frozenset(exempt)
        # Limits are in real seconds (what an attacker spends), whatever the game's speed.
        self.failures = Backoff(reactor, FREE_FAILURES, FIRST_WAIT, MAX_WAIT, FORGET_FAILURES)
        self.creations = Window(reactor, CREATES_PER_ADDRESS, CREATE_PERIOD)
        self._creating: set[str] = set()
        self._checking: Counter[tuple[str, str]] = Counter()  # keys of passwords being checked
        self.sessions: dict[int, GameSession] = {}
        self.link: amp.AMP | None = None
        self.outbox = Outbox(reactor, ToPortal, lambda: self.link)
        self.closed = False

    # -- the link to the portal ------------------------------------------------------------

    def attach(self, link: amp.AMP, sessions: list[dict], notice: str) -> None:
        """Take over the portal's connections (Hello's answer), then load the stored tasks."""
        self.link = link
        for row in sessions:
            session = GameSession(self, row["sid"], row["address"])
            self.sessions[session.sid] = session
            if row["character_id"] is not None:
                try:
                    character = self.runtime.objects.get(row["character_id"])
                except LookupError:
                    session.send("Your character is gone; please connect again.")
                    self.outbox.put("login", session.sid, None, "")
                    session.send(BANNER)
                else:
                    session.character = character
                    character.sessions.append(session)
            elif not row["greeted"]:
                session.send(BANNER)
        restored = self.runtime.tasks.load()
        log.info("game process {pid} ready: {sessions} connection(s), {restored} persistent "
                 "task(s) restored", pid=os.getpid(), sessions=len(sessions), restored=restored)
        if notice:
            plural = "" if restored == 1 else "s"
            self.broadcast(f"{notice} ({restored} persistent task{plural} restored).")

    def request_reload(self) -> None:
        """Ask the portal to restart this process with the code on disk."""
        self.outbox.flush()
        if self.link is not None:
            self.link.callRemote(Reload).addErrback(lambda f: None)

    def shutdown(self, reason: str) -> None:
        """Stop gracefully: persistent tasks stay stored, the store is closed."""
        if self.closed:
            return
        log.info("game process {pid} stopping ({reason})", pid=os.getpid(), reason=reason)
        for session in self.sessions.values():
            if session.busy:  # its answer would come to a closed game, and be dropped
                session.send(UNFINISHED.format(word=session.busy))
        self.outbox.flush()
        self.closed = True
        self.accounts.closed = True
        self.runtime.close()

    # -- events from the portal ------------------------------------------------------------

    def handle(self, events: list[list]) -> None:
        """Act on a batch of portal events; one failing never stops the others."""
        for event in events:
            try:
                kind = event[0]
                if kind == "input":
                    self.input(event[1], event[2])
                elif kind == "connect":
                    self.connect(event[1], event[2])
                elif kind == "disconnect":
                    self.disconnect(event[1])
                else:
                    log.warn("unknown event from the portal: {event!r}", event=event)
            except Exception:
                log.failure("handling portal event {event!r}", event=event, level=LogLevel.error)

    def connect(self, sid: int, address: str) -> None:
        session = GameSession(self, sid, address)
        self.sessions[sid] = session
        session.send(BANNER)

    def disconnect(self, sid: int) -> None:
        session = self.sessions.pop(sid, None)
        if session is None or session.character is None:
            return
        character = session.character
        # Closes the questions the character waits on once its last connection is gone.
        self.runtime.disconnect(character, session)
        log.info("{name} disconnected ({address})", name=character.key, address=session.address)

    def input(self, sid: int, line: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.character is None:
            self.login(session, line)
            return
        try:
            done = session.character.execute_cmd(line, session=session)
        except Exception:
            log.failure("command {line!r} from {character!r}", line=line,
                        character=session.character, level=LogLevel.error)
            session.send("Sorry, that failed with an error; it has been logged.")
        else:
            done.addErrback(self._command_failed, session, line)

    def _command_failed(self, failure: Any, session: GameSession, line: str) -> None:
        log.failure("command {line!r} from {character!r}", failure, line=line,
                    character=session.character, level=LogLevel.error)

    # -- logging in ------------------------------------------------------------------------

    def login(self, session: GameSession, line: str) -> None:
        """A line from a connection that has no character yet."""
        word, _, rest = line.strip().partition(" ")
        word = word.lower()
        if word in ("create", "connect"):
            name, _, password = rest.strip().partition(" ")
            password = password.strip()
            if not name or not password:
                session.send(f"Usage: {word} <name> <password>")
            elif session.busy:
                session.send("Still checking your last request; hold on.")
            elif word == "create":
                self._create(session, name, password)
            else:
                self._connect(session, name, password)
        elif word == "quit":
            session.close("Goodbye!")
        elif word:
            session.send(f"You are not logged in yet.\n{BANNER}")

    def _limited(self, session: GameSession) -> bool:
        return session.host not in self.exempt

    def _create(self, session: GameSession, name: str, password: str) -> None:
        problem = check_name(name)
        if problem is None and len(password) < MIN_PASSWORD:
            problem = f"A password needs at least {MIN_PASSWORD} characters."
        if problem:
            session.send(problem)
            return
        address = ("address", session.host)
        wait = self.creations.wait(address) if self._limited(session) else 0.0
        if wait:
            session.send(f"Too many accounts were asked for from your address: wait "
                         f"{math.ceil(wait / 60)} min before asking for another.")
            return
        if self._limited(session):
            self.creations.add(address)
        # The same words for a name that is taken, reserved or being made right now: create
        # does not tell who has an account.
        key = name.lower()
        if key in self._creating or not self.accounts.available(name):
            session.send(NOT_AVAILABLE.format(name=name))
            return
        session.busy = "create"
        self._creating.add(key)
        done = self.accounts.create(name, password)
        done.addBoth(self._passthrough, self._creating.discard, key)
        done.addCallback(self._created, session, name)
        done.addErrback(self._login_failed, session)

    @staticmethod
    def _passthrough(result: Any, call: Any, *args: Any) -> Any:
        call(*args)
        return result

    def _created(self, character: Any, session: GameSession, name: str) -> None:
        session.busy = ""
        if self.sessions.get(session.sid) is not session or self.closed:
            return
        if character is None:
            session.send(NOT_AVAILABLE.format(name=name))
            return
        self._puppet(session, character)
        superuser = " You are the superuser (try 'py' and 'reload')." \
            if character.db.superuser else ""
        session.send(f"Welcome, {character.key}! Your character has been created.{superuser}\n"
                     "Type 'help' for the commands, 'look' to look around.")

    def _connect(self, session: GameSession, name: str, password: str) -> None:
        keys = [("name", name.lower())]
        if self._limited(session):
            keys.append(("address", session.host))
        wait = max(self.failures.wait(key) for key in keys)
        if wait:
            session.send(f"Too many failed logins: wait {math.ceil(wait)} s before trying "
                         "again.")
            return
        # A check under way counts as a failure to come: else guesses sent at once (on many
        # connections) would all be checked before the first failure was counted.
        if any(self._checking[key] and self.failures.count(key) + self._checking[key]
               >= FREE_FAILURES for key in keys):
            session.send(CHECKING)
            return
        session.busy = "connect"
        self._checking.update(keys)
        done = self.accounts.authenticate(name, password)
        done.addBoth(self._passthrough, self._checked, keys)
        done.addCallback(self._connected, session, keys)
        done.addErrback(self._login_failed, session)

    def _checked(self, keys: list) -> None:
        for key in keys:
            self._checking[key] -= 1
            if self._checking[key] <= 0:
                del self._checking[key]

    def _connected(self, character: Any, session: GameSession, keys: list) -> None:
        session.busy = ""
        if character is None:
            for key in keys:
                self.failures.failed(key)
        else:
            self.failures.succeeded(keys[0])  # the name's count; the address keeps its own
        if self.sessions.get(session.sid) is not session or self.closed:
            return
        if character is None:
            session.failures += 1
            log.info("failed login from {address} ({n} on this connection)",
                     address=session.address, n=session.failures)
            if session.failures >= MAX_FAILURES:
                session.close("Wrong name or password. Too many failed logins: goodbye.")
                return
            session.send("Wrong name or password.")
            return
        session.failures = 0
        self._puppet(session, character)
        session.send(f"Welcome back, {character.key}! Type 'help' for the commands.")

    def _login_failed(self, failure: Any, session: GameSession) -> None:
        session.busy = ""
        if failure.check(Busy):
            log.warn("refused a login from {address}: {why}", address=session.address,
                     why=str(failure.value))
            if self.sessions.get(session.sid) is session:
                session.send(BUSY)
            return
        log.failure("login from {address}", failure, address=session.address, level=LogLevel.error)
        if self.sessions.get(session.sid) is session:
            session.send("Sorry, logging in failed with an error; it has been logged.")

    def _puppet(self, session: GameSession, character: Any) -> None:
        session.character = character
        character.sessions.append(session)
        self.outbox.put("login", session.sid, character.id, character.key)
        log.info("{name} connected ({address})", name=character.key, address=session.address)

    # -- for commands ----------------------------------------------------------------------

    def characters(self) -> list[Any]:
        """The characters with at least one connection, in the order they connected."""
        seen: dict[int, Any] = {}
        for session in self.sessions.values():
            if session.character is not None:
                seen.setdefault(session.character.id, session.character)
        return list(seen.values())

    def broadcast(self, text: str) -> None:
        """Show ``text`` on every connection, logged in or not."""
        for session in self.sessions.values():
            session.send(text)


class GameLink(amp.AMP):
    """The game's end of the AMP connection to the portal."""

    def __init__(self, game: Game, stopped: defer.Deferred) -> None:
        super().__init__()
        self.game = game
        self.stopped = stopped

    @ToGame.responder
    def to_game(self, events: list) -> dict:
        self.game.handle(events)
        return {}

    @Shutdown.responder
    def shutdown(self, reason: str) -> dict:
        self.game.shutdown(reason)
        self.game.runtime.reactor.callLater(0, self.transport.loseConnection)
        return {}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.game.link = None
        self.game.outbox.clear()
        self.game.shutdown("the portal closed the connection")
        if not self.stopped.called:
            self.stopped.callback(None)


async def _run(reactor: Any, options: argparse.Namespace) -> None:
    # The portal decides when this process stops; Ctrl-C in a terminal reaches both processes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    clock = reactor if options.speed == 1 else ScaledClock(reactor, options.speed)
    runtime = Runtime(clock=clock, db_path=options.db,
                      trusted=[typeclass_package(options.typeclass)])
    set_runtime(runtime)
    game = Game(runtime, options.exempt_address, options.typeclass)
    reactor.addSystemEventTrigger("before", "shutdown", game.shutdown, "the process is stopping")
    stopped: defer.Deferred = defer.Deferred()
    link = await connectProtocol(UNIXClientEndpoint(reactor, options.socket, timeout=10),
                                 GameLink(game, stopped))
    answer = await link.callRemote(Hello, pid=os.getpid())
    game.attach(link, answer["sessions"], answer["notice"])
    await stopped


def main(argv: list[str] | None = None) -> None:
    """Run a game process (the portal starts it; it is no use on its own)."""
    from twisted.internet import task

    parser = argparse.ArgumentParser(prog="python -m evasync.server.game")
    parser.add_argument("--socket", required=True, help="the portal's unix socket")
    parser.add_argument("--db", required=True, help="the store file")
    parser.add_argument("--speed", type=float, default=1.0, help="game time speed factor")
    parser.add_argument("--exempt-address", action="append", default=[],
                        help="an address not held to the per-address limits (repeatable)")
    parser.add_argument("--typeclass", default=CHARACTER_TYPECLASS,
                        help="the typeclass of new characters")
    options = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # the portal relays each line to the log
    start_logging([sys.stdout])
    try:  # a store that cannot be used must stop start-up, before this process says Hello
        store = Store(options.db)
        store.conn
        store.close()
    except StoreError as exc:
        log.critical("cannot start the game: {error}", error=str(exc))
        sys.exit(EXIT_BAD_STORE)
    task.react(lambda reactor: defer.ensureDeferred(_run(reactor, options)))


if __name__ == "__main__":
    # Import ourselves by name: the classes must be evasync.server.game's, not __main__'s.
    from evasync.server import game as _game

    _game.main()
