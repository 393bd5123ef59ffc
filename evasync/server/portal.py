"""The portal: the process that holds the players' connections and outlives the game process.

It listens for telnet on the game's address, for browsers on the web client's (see :mod:`.web`)
and for the game process on a unix socket, starts the game process
(``python -m evasync.server.game``) and starts it again:

* on a **reload** (the ``reload`` command, ``evasync reload`` or SIGHUP): everyone is told, the
  game process is asked to :class:`~evasync.server.protocol.Shutdown` (it closes its runtime:
  persistent tasks stay stored), and a fresh one, with the code read again from disk, takes over
  every connection with its login (:class:`~evasync.server.protocol.Hello`). Lines typed
  meanwhile are held and delivered to the new process;
* after a **crash** (the game process died, even by SIGKILL): the same, after a short pause
  that grows if it keeps crashing.

SIGTERM or SIGINT (or ``evasync stop``) stops the game gracefully, says goodbye and exits.

At most :data:`MAX_PER_ADDRESS` connections are open from one address (addresses named with
``--exempt-address`` excepted), and at most ``--max-connections`` (default
:data:`MAX_CONNECTIONS`) from everywhere together, telnet and web pages alike; one more is told
so and closed. The portal asks the system for the open files that takes (see :func:`run`).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from collections import Counter
from typing import Any, Iterable

from twisted.application import service
from twisted.internet import defer, endpoints, error, protocol
from twisted.logger import Logger, LogLevel
from twisted.protocols import amp

from .fairness import InputBudget
from .logs import relay, start_logging
from .protocol import EXIT_BAD_STORE, SPACING, Hello, Outbox, Reload, Shutdown, ToGame, ToPortal
from .rundir import RunDir
from .telnet import TelnetSession, TelnetTransport
from .limits import Episodes
from .web import WebSession, site as web_site

log = Logger(namespace="evasync.server.portal")

#: Seconds a new game process has to say Hello, and a stopping one to exit, before it is killed.
HELLO_TIMEOUT = 60.0
#: A game process that ran this many seconds before crashing is restarted without delay.
STABLE_AFTER = 30.0
SHUTDOWN_TIMEOUT = 20.0
#: Input lines held per connection while no game process is connected.
HELD_MAX = 50
#: Longest pause before restarting a game process that keeps crashing.
MAX_RESTART_WAIT = 30.0
#: Connections open at once from one address.
MAX_PER_ADDRESS = 16
#: Connections the portal serves at once by default, from all addresses together (telnet and
#: web pages; ``evasync start --max-connections``). The web port holds at most twice that many
#: sockets, HTTP ones included (see :func:`evasync.server.web.site`).
MAX_CONNECTIONS = 1000
#: Open files the portal needs besides its players' sockets (its log, the game's link, ...).
SPARE_FILES = 256

RELOADING = "The server is reloading; you stay connected. Hold on ..."
RELOADED = "... the server has been reloaded"
CRASHED = "The game stopped unexpectedly and is being restarted; you stay connected."
RESTARTED = "... the game is back"
STOPPING = "The server is shutting down. Goodbye!"


class GameProcess(protocol.ProcessProtocol):
    """The game process, seen from the portal: relays its output to the log."""

    def __init__(self, portal: "Portal") -> None:
        self.portal = portal
        self.pid: int | None = None
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, self._partial[childFD] = (self._partial[childFD] + data).split(b"\n")
        for line in lines:
            self._relay(childFD, line)

    def _relay(self, childFD: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if childFD == 1:
            relay(log, text)
        elif text:
            relay(log, f"[game process {self.pid} stderr] {text}", LogLevel.warn)

    def processEnded(self, reason: Any) -> None:
        for childFD, rest in self._partial.items():
            if rest:
                self._relay(childFD, rest)
        self.portal.game_ended(self, reason)


class PortalAMP(amp.AMP):
    """The portal's end of the AMP connection with a game process."""

    def __init__(self, portal: "Portal") -> None:
        super().__init__()
        self.portal = portal

    @Hello.responder
    def hello(self, pid: int) -> dict:
        return self.portal.game_hello(self, pid)

    @ToPortal.responder
    def to_portal(self, events: list) -> dict:
        self.portal.from_game(events)
        return {}

    @Reload.responder
    def reload(self) -> dict:
        self.portal.reactor.callLater(0, self.portal.reload)
        return {}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.portal.game_link_lost(self)


class Portal(service.Service):
    """Connections, the game process and the way between them.

    A service: :meth:`listen`, then ``startService()`` writes the pid and state files and
    starts the game process; ``stopService()`` stops it all gracefully (its Deferred fires once
    the game process has exited).

    Args:
        reactor: The reactor to run on.
        rundir: Where the pid, state and socket files go.
        host, port: The telnet address (port 0: any free port, written to the state file).
        speed: Game time speed factor given to the game process (1: real time).
        exempt: Addresses not held to the per-address limits (of the portal and the game).
        typeclass: The typeclass of new characters, given to the game process (None: the
            demo's).
        web: The web client's address, ``(host, port)`` (port 0: any free port, written to the
            state file), or None for no web client.
        max_connections: Connections served at once, from all addresses together.
    """

    def __init__(self, reactor: Any, rundir: RunDir, host: str, port: int,
                 speed: float = 1.0, exempt: Iterable[str] = (),
                 typeclass: str | None = None, web: tuple[str, int] | None = None,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        #: Called whenever :attr:`phase` changes (the web client shows the game's state).
        self.phase_watchers: list[Any] = []
        self.reactor = reactor
        self.rundir = rundir
        self.host = host
        self.port = port
        self.speed = speed
        self.exempt = frozenset(exempt)
        self.max_connections = max_connections
        self._full = Episodes(reactor)  # refusals for max_connections
        self.budget = InputBudget(reactor)
        self.typeclass = typeclass
        self.web = web
        self.sessions: dict[int, TelnetSession | WebSession] = {}
        self._per_host: Counter[str] = Counter()
        self._refusing: set[str] = set()
        self._next_sid = 1
        self.process: GameProcess | None = None
        self.link: PortalAMP | None = None
        self.outbox = Outbox(reactor, ToGame, lambda: self.link, SPACING)
        self._reloading = False
        self.phase = "down"
        self.generation = 0
        self.stopping = False
        self.done: defer.Deferred = defer.Deferred()
        self._notice = ""
        self._waiters: list[defer.Deferred] = []
        self._crashes = 0
        self._running_since = 0.0
        #: The portal's exit status: 1 once the game cannot be started at all.
        self.exit_code = 0
        self._timer: Any = None
        self._game_gone: defer.Deferred | None = None
        self._listeners: list[Any] = []
        self._started = time.time()

    # -- starting and stopping the portal --------------------------------------------------

    async def listen(self) -> None:
        """Listen for the game process (unix socket), for telnet and for the web client;
        raises ``CannotListenError``."""
        # Not StreamServerEndpointService: it hides the bound port (port 0) and reports a
        # failure to listen only to the log, where we must exit with an error.
        rundir = self.rundir
        rundir.create()
        if os.path.exists(rundir.socket):
            os.unlink(rundir.socket)  # left by a portal that was killed (none runs: checked)
        amp_factory = protocol.Factory.forProtocol(lambda: PortalAMP(self))
        amp_factory.noisy = False
        telnet_factory = protocol.ServerFactory.forProtocol(
            lambda: TelnetTransport(TelnetSession, self))
        telnet_factory.noisy = False
        quote = endpoints.quoteStringArgument
        amp_at = endpoints.serverFromString(
            self.reactor, f"unix:{quote(rundir.socket)}:mode=600:lockfile=0")
        telnet_at = endpoints.serverFromString(
            self.reactor, f"tcp:{self.port}:interface={quote(self.host)}")
        self._listeners.append(await amp_at.listen(amp_factory))
        telnet_port = await telnet_at.listen(telnet_factory)
        self._listeners.append(telnet_port)
        self.port = telnet_port.getHost().port
        if self.web is not None:
            web_at = endpoints.serverFromString(
                self.reactor, f"tcp:{self.web[1]}:interface={quote(self.web[0])}")
            web_port = await web_at.listen(web_site(self))
            self._listeners.append(web_port)
            self.web = (self.web[0], web_port.getHost().port)

    def startService(self) -> None:
        """Write the pid and state files and start the game process (after :meth:`listen`)."""
        super().startService()
        self.rundir.write_pid()
        self._write_state()
        signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))
        log.info("portal {pid} listening for telnet on {host}:{port}; store {db}",
                 pid=os.getpid(), host=self.host, port=self.port, db=self.rundir.db)
        if self.web is not None:
            log.info("web client on {url}", url=self.web_url)
        self.spawn_game()

    def _write_state(self) -> None:
        self.rundir.write_state({
            "pid": os.getpid(), "host": self.host, "port": self.port, "db": self.rundir.db,
            "log": self.rundir.logfile, "socket": self.rundir.socket, "speed": self.speed,
            "started": self._started, "ready": self.phase == "running",
            "game_pid": self.process.pid if self.process is not None else None,
            "generation": self.generation, "typeclass": self.typeclass, "web": self.web_url,
        })

    @property
    def web_url(self) -> str | None:
        """The web client's address, or None if it is off."""
        if self.web is None:
            return None
        host = self.web[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.web[1]}/"

    # -- what the web client shows of the game's state -----------------------------------

    @property
    def phase(self) -> str:
        """"starting" (waiting for Hello), "running", "stopping" (Shutdown sent) or "down"."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = value
        for watcher in self.phase_watchers:
            watcher()

    @property
    def reloading(self) -> bool:
        """True from a reload's start until the new game process is ready."""
        return self._reloading

    def stopService(self) -> defer.Deferred:
        """Say goodbye, stop the game process gracefully, then everything else."""
        super().stopService()
        if self._game_gone is not None:  # stopping already
            return self._game_gone if not self._game_gone.called else defer.succeed(None)
        self.stopping = True
        log.info("portal stopping")
        self.broadcast(STOPPING)
        for listener in self._listeners[1:]:
            listener.stopListening()
        self._game_gone = defer.Deferred()
        if self.process is None:
            self._game_gone.callback(None)
        elif self.phase == "running":
            self._stop_game("the server is shutting down")
        else:
            self.process.transport.signalProcess("TERM")
        self._game_gone.addCallback(self._after_game_stopped)
        return self._game_gone

    def _after_game_stopped(self, _: Any) -> None:
        for session in list(self.sessions.values()):
            session.close()
        self._listeners[0].stopListening()
        self.rundir.clean()
        log.info("portal stopped")
        if not self.done.called:
            self.done.callback(None)

    # -- the game process ------------------------------------------------------------------

    def spawn_game(self) -> None:
        """Start a game process; it connects back and says Hello."""
        self._cancel_timer()
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        args = [sys.executable, "-m", "evasync.server.game", "--socket", self.rundir.socket,
                "--db", self.rundir.db, "--speed", repr(self.speed)]
        for address in sorted(self.exempt):
            args += ["--exempt-address", address]
        if self.typeclass:
            args += ["--typeclass", self.typeclass]
        self.process = GameProcess(self)
        self.reactor.spawnProcess(self.process, sys.executable, args, env=env,
                                  childFDs={0: "w", 1: "r", 2: "r"})
        self.phase = "starting"
        self._timer = self.reactor.callLater(HELLO_TIMEOUT, self._kill_game, "did not start")
        log.info("started game process {pid}", pid=self.process.pid)

    def game_hello(self, link: PortalAMP, pid: int) -> dict:
        """A game process is ready: hand it the connections (Hello's answer)."""
        if self.process is None or pid != self.process.pid or self.phase != "starting":
            raise amp.RemoteAmpError(b"UNEXPECTED", f"not expecting a game process {pid}")
        self._cancel_timer()
        self.link = link
        self.generation += 1
        self._running_since = time.monotonic()
        self._reloading = False
        self.phase = "running"
        table = [{"sid": s.sid, "address": s.address, "character_id": s.character_id,
                  "greeted": s.greeted} for s in self.sessions.values()]
        for session in self.sessions.values():
            session.greeted = True
        notice, self._notice = self._notice, ""
        self._write_state()
        self.reactor.callLater(0, self._release_held)
        log.info("game process {pid} connected ({n} connection(s) handed over)", pid=pid,
                 n=len(table))
        return {"sessions": table, "notice": notice}

    def _release_held(self) -> None:
        for session in self.sessions.values():
            while session.held and self.phase == "running":
                self.outbox.put("input", session.sid, session.held.popleft())
            session.held_dropped = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def game_link_lost(self, link: PortalAMP) -> None:
        if link is self.link:
            self.link = None
            self.outbox.clear()

    # Not procmon.ProcessMonitor: it hides the exit status (a store that cannot be used must
    # stop the server), relays output in its own format, and knows nothing of Hello or reloads.
    def game_ended(self, process: GameProcess, reason: Any) -> None:
        if process is not self.process:
            return
        self._cancel_timer()
        was = self.phase
        self.process = None
        self.link = None
        self.outbox.clear()
        self.phase = "down"
        self._write_state()
        if self.stopping:
            log.info("game process {pid} stopped", pid=process.pid)
            if self._game_gone is not None and not self._game_gone.called:
                self._game_gone.callback(None)
            return
        if self._reloading and was == "stopping":
            log.info("game process {pid} stopped for a reload", pid=process.pid)
            self.spawn_game()
            return
        if getattr(reason.value, "exitCode", None) == EXIT_BAD_STORE:
            log.critical("the game process cannot use the store {db} (see above); stopping",
                         db=self.rundir.db)
            self.exit_code = 1
            self.reactor.stop()
            return
        if was == "running" and time.monotonic() - self._running_since > STABLE_AFTER:
            self._crashes = 0  # it ran fine for a while: this crash starts a new count
        self._crashes += 1
        wait = 0.0 if self._crashes == 1 else min(2.0 ** (self._crashes - 2), MAX_RESTART_WAIT)
        log.error("game process {pid} ended unexpectedly ({why}); restarting it in {wait} s",
                  pid=process.pid, why=reason.getErrorMessage(), wait=wait)
        if was == "running":
            self.broadcast(CRASHED)
            self._notice = RESTARTED
        self._timer = self.reactor.callLater(wait, self.spawn_game)

    def reload(self) -> defer.Deferred:
        """Restart the game process with the code on disk; fires once the new one is ready."""
        waiter: defer.Deferred = defer.Deferred()
        if self.stopping:
            waiter.errback(RuntimeError("the server is stopping"))
            return waiter
        self._waiters.append(waiter)
        if self.phase == "running":
            log.info("reloading")
            self.broadcast(RELOADING)
            self._notice = RELOADED
            self._reloading = True
            self._stop_game("reload")
        elif self.phase == "down" and self._timer is not None:
            self.spawn_game()  # waiting after a crash: try again now
        return waiter

    def _stop_game(self, reason: str) -> None:
        self.phase = "stopping"
        self._write_state()
        self.outbox.flush()
        if self.link is not None:
            self.link.callRemote(Shutdown, reason=reason).addErrback(
                lambda failure: log.warn("game process did not answer Shutdown: {why}",
                                         why=failure.getErrorMessage()))
        self._timer = self.reactor.callLater(SHUTDOWN_TIMEOUT, self._kill_game,
                                             "did not stop in time")

    def _kill_game(self, why: str) -> None:
        self._timer = None
        if self.process is not None:
            log.error("game process {pid} {why}: killing it", pid=self.process.pid, why=why)
            try:
                self.process.transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- connections -----------------------------------------------------------------------

    def session_opened(self, session: TelnetSession) -> bool:
        """A new connection: False if it was refused (and is being closed)."""
        host = session.host
        if self._per_host[host] >= MAX_PER_ADDRESS and host not in self.exempt:
            if host not in self._refusing:  # logged once per episode, not once per attempt
                self._refusing.add(host)
                log.warn("refusing connections from {host}: {n} already open", host=host,
                         n=MAX_PER_ADDRESS)
            session.close(f"Too many connections from your address ({MAX_PER_ADDRESS}); "
                          "close one and try again.")
            return False
        if len(self.sessions) >= self.max_connections:
            if self._full.refused():
                log.warn("refusing connections: {n} are open, the most --max-connections "
                         "allows", n=self.max_connections)
            session.close(f"The server is full (connection limit: {self.max_connections}); "
                          "try again later.")
            return False
        self._per_host[host] += 1
        session.sid = self._next_sid
        self._next_sid += 1
        self.sessions[session.sid] = session
        if self.phase == "running":
            session.greeted = True
            self.outbox.put("connect", session.sid, session.address)
        else:
            session.send("The game is starting; hold on ...")
        return True

    def session_input(self, session: TelnetSession, line: str) -> None:
        # Lines held during a reload go first: a new one must not overtake them.
        if self.phase == "running" and not session.held:
            self.outbox.put("input", session.sid, line)
        elif len(session.held) < HELD_MAX:
            session.held.append(line)
        elif not session.held_dropped:
            session.held_dropped = True
            session.send("The game is restarting; further input is dropped until it is back.")

    def session_closed(self, session: TelnetSession) -> None:
        if self.sessions.pop(session.sid, None) is None:
            return
        self._per_host[session.host] -= 1
        if self._per_host[session.host] <= 0:
            del self._per_host[session.host]
            self._refusing.discard(session.host)
        if self.phase == "running" and session.greeted:
            self.outbox.put("disconnect", session.sid)

    def from_game(self, events: list[list]) -> None:
        """Act on a batch of events from the game process."""
        for event in events:
            session = self.sessions.get(event[1])
            if session is None:
                continue
            kind = event[0]
            if kind == "send":
                session.send(event[2])
            elif kind == "sendpart":
                session.send(event[2], end="")
            elif kind == "login":
                session.logged_in(event[2], event[3])
            elif kind == "close":
                session.close()

    def broadcast(self, text: str) -> None:
        """Show ``text`` on every connection."""
        for session in list(self.sessions.values()):  # a send may hang up on a session
            session.send(text)


def run(host: str, port: int, db: str | None, speed: float = 1.0, console: bool = True,
        exempt: Iterable[str] = (), typeclass: str | None = None,
        web: tuple[str, int] | None = None, max_connections: int = MAX_CONNECTIONS) -> int:
    """Run the portal (and so the server) in this process until it is stopped.

    The process's limit of open files is raised, within what the system allows, to what
    ``max_connections`` needs (:func:`files_needed`): a common default of 1,024 would run out
    first. If the system allows fewer, the log says so.

    Returns:
        The exit status: 0 after a clean stop, 1 if the server could not start.
    """
    from twisted.internet import task

    rundir = RunDir(db)
    rundir.create()
    running = rundir.pid()
    if running is not None:
        print(f"evasync is already running (pid {running}) for the store {rundir.db}",
              file=sys.stderr)
        return 1
    logfile = rundir.open_log()
    start_logging([logfile, sys.stdout] if console else [logfile])
    needed = files_needed(max_connections)
    allowed = raise_file_limit(needed)
    if allowed < needed:
        log.warn("this process may open {allowed} files, and --max-connections {n} needs "
                 "{needed}: connections beyond what the files allow are dropped by the system. "
                 "Raise the limit (ulimit -n) or lower --max-connections.", allowed=allowed,
                 n=max_connections, needed=needed)

    portals: list[Portal] = []

    async def main(reactor: Any) -> None:
        portal = Portal(reactor, rundir, host, port, speed, exempt, typeclass, web,
                        max_connections)
        portals.append(portal)
        try:
            await portal.listen()
        except error.CannotListenError as exc:
            log.error("cannot listen: {why}", why=str(exc))
            rundir.clean()
            raise SystemExit(1)
        portal.startService()
        reactor.addSystemEventTrigger("before", "shutdown", portal.stopService)
        await portal.done

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:
        code = 0
    return max([code] + [portal.exit_code for portal in portals])


def files_needed(max_connections: int) -> int:
    """Open files the portal may need with ``max_connections``: a socket for each telnet
    player, the web port's (twice as many: pages and their page loads) and
    :data:`SPARE_FILES`."""
    return 3 * max_connections + SPARE_FILES


def raise_file_limit(needed: int) -> int:
    """Raise this process's soft limit of open files to ``needed`` if it is lower, as far as
    the hard limit allows; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return needed if soft == resource.RLIM_INFINITY else soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError, OverflowError):  # OverflowError: a target past the C type
        return soft
    return target
