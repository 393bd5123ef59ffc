"""Helpers for the demo server's tests: a server in subprocesses and a plain telnet client.

Servers run with ``--speed 10`` (game time ten times faster: the howto's ten-second commands
take one second) on a free port, with a store in the test's temporary folder. Waiting is always
polling with a deadline, never a fixed sleep; deadlines are sized for a busy machine (they only
matter when something is wrong).

Each client connects from an address of its own on loopback (127.1.x.y: all of 127/8 is this
machine), as players on different machines would, so the server's per-address limits count
only what a test means them to; a test of those limits passes the same ``source`` to several.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import itertools
import time
from pathlib import Path

from evasync.server.rundir import RunDir
from evasync.server.session import BACKLOG_MAX

from ._store_files import stored_rows

SPEED = 10
TIMEOUT = 60.0
PASSWORD = "secret-pw"
_addresses = (f"127.1.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def address() -> str:
    """A loopback address no client has used yet."""
    return next(_addresses)


ROOT = Path(__file__).resolve().parent.parent


def evasync(*args: str, db: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the ``evasync`` command line and return its completed process (text output)."""
    return subprocess.run([sys.executable, "-m", "evasync", *args, "--db", str(db)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def wait_for(condition, timeout: float = TIMEOUT, what: str = "condition"):
    """Poll ``condition()`` until it returns something true; return that (AssertionError if not)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def flood_until_hung_up(admin: "Client", deaf: "TextClient", name: str) -> None:
    """Make the game write to ``deaf`` (logged in as ``name``, its socket never read, with a
    small receive buffer) many times what the portal keeps for a player who does not read, and
    wait until the game's ``who`` (asked by ``admin``) no longer lists ``name``."""
    deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = 100_000
    admin.command(f"py d = evasync.search_object({name!r})[0]; "
                  f"[d.msg('x' * {chunk}) for i in range({BACKLOG_MAX * 40 // chunk})]; 'sent'",
                  "<<< 'sent'")
    wait_for(lambda: name not in admin.command("who", r"Connected.*").group(0),
             what=f"{name} to be hung up on")
    admin.command("look", "The Demo Room")  # the server still answers the others


@contextlib.contextmanager
def made_clients(server: "Server"):
    """``make(name=None, **kwargs)``: a client of ``server`` (see :meth:`Server.client`), each
    closed when the block ends (a test's ``clients`` fixture)."""
    made: list[Client] = []

    def make(name=None, **kwargs):
        client = server.client(name, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()


class Server:
    """``evasync start --foreground`` in a subprocess, for one store in ``folder`` (``options``:
    more of ``evasync start``'s options)."""

    def __init__(self, folder: Path, speed: float = SPEED, exempt: list[str] = (),
                 port: int = 0, web_port: int = 0, options: list[str] = ()) -> None:
        self.folder = folder
        self.exempt = list(exempt)
        self.ports = ["--port", str(port), "--web-port", str(web_port), *options]
        self.db = folder / "evasync.db"
        self.rundir = RunDir(self.db)
        self.speed = speed
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.output = open(self.folder / "server.out", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", *self.ports,
             "--speed", str(self.speed), "--db", str(self.db),
             *[arg for address in self.exempt for arg in ("--exempt-address", address)]],
            stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready(generation=1)
        return self

    def state(self) -> dict:
        return self.rundir.state()

    def wait_ready(self, generation: int) -> dict:
        """Wait until the game process of that generation (1: first start) is ready."""
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n"
                                     f"{self.log()}")
            state = self.state()
            return state if state.get("ready") and state.get("generation", 0) >= generation \
                and state.get("pid") == self.process.pid else None
        return wait_for(ready, what=f"game generation {generation}")

    @property
    def port(self) -> int:
        return self.state()["port"]

    @property
    def web(self) -> str:
        """The web client's address (``http://127.0.0.1:PORT/``)."""
        return self.state()["web"]

    @property
    def game_pid(self) -> int:
        return self.state()["game_pid"]

    def log(self) -> str:
        try:
            return Path(self.rundir.logfile).read_text(errors="replace")
        except OSError:
            return ""

    def client(self, name: str | None = None, password: str = PASSWORD,
               create: bool = True, source: str | None = None) -> "Client":
        """A connected client (from ``source``, default a new address); logged in as ``name``
        (created, or connected) if given."""
        client = Client(self.port, source=source)
        client.expect("create <name> <password>")
        if name is not None:
            client.login(name, password, create)
        return client

    def stop(self) -> int:
        """SIGTERM (a graceful stop) and wait for the exit status."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the game process and the portal (a crash)."""
        for pid in (self.state().get("game_pid"), self.process.pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        self.output.close()

    def tasks(self) -> list[tuple]:
        """The persistent tasks stored, as (id, callback, args) by id, read without changing
        the store (:func:`._store_files.stored_rows`)."""
        return [(row[0], row[3], row[4]) for row in stored_rows(self.db)]


_TELNET = re.compile(rb"\xff\xfa.*?\xff\xf0|\xff[\xfb-\xfe].|\xff[\xf0-\xfa]", re.S)


class TextClient:
    """What a test client on a blocking socket shares: ``expect`` text, ``command``, ``login``.

    A subclass keeps what it has received in ``text`` (``pos`` is the end of the previous
    match), sets ``closed`` when the server closes, and reads more in ``_read(timeout)``.
    """

    text: str
    pos: int
    closed: bool

    def send(self, line: str) -> None:
        raise NotImplementedError

    def _read(self, timeout: float) -> None:
        raise NotImplementedError

    def _closed_note(self) -> str:
        return ""

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """Wait for the regular expression ``pattern`` (or a plain string) in new text."""
        regex = re.compile(pattern if any(c in pattern for c in "^$()[]\\*+?|") else
                           re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.text, self.pos)
            if found:
                self.pos = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"did not see {pattern!r} within {timeout} s; got after "
                                     f"the last match:\n{self.text[self.pos:]!r}"
                                     f"{self._closed_note()}")
            self._read(min(left, 0.2))

    def command(self, line: str, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        self.send(line)
        return self.expect(pattern, timeout)

    def login(self, name: str, password: str = PASSWORD, create: bool = True) -> None:
        if create:
            self.command(f"create {name} {password}", f"Welcome, {name}!")
        else:
            self.command(f"connect {name} {password}", f"Welcome back, {name}!")


class Client(TextClient):
    """A line-based telnet client on a blocking socket: ``send`` lines, ``expect`` text.

    Telnet negotiation from the server is stripped and left unanswered (allowed: a client may
    ignore options). Everything received is kept in ``text``; ``expect`` searches from the end
    of its previous match.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None) -> None:
        self.source = source or address()
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT,
                                             source_address=(self.source, 0))
        self.text = ""
        self.pos = 0
        self.closed = False

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode("utf-8") + b"\r\n"
        self.sock.sendall(data)

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self.text += _TELNET.sub(b"", data).decode("utf-8", "replace").replace("\r\n", "\n")

    def absent(self, pattern: str, within: float) -> None:
        """Check that ``pattern`` does not arrive within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.closed:
            self._read(min(0.1, max(0.0, deadline - time.monotonic())))
        assert pattern not in self.text[self.pos:], f"unexpected {pattern!r} in {self.text!r}"

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        wait_for(lambda: self._read(0.1) or self.closed, timeout, "the connection to close")

    def close(self) -> None:
        self.sock.close()


class _Turns:
    """Reactor turns, as the input budget sees them: a call scheduled during a turn runs in the
    next one (``task.Clock.advance(0)`` would run it at once), as on the real reactor."""

    class _Call:
        def __init__(self, func, args) -> None:
            self.func, self.args, self.cancelled = func, args, False

        def active(self) -> bool:
            return not self.cancelled

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self) -> None:
        self.pending: list = []

    def callLater(self, delay, func, *args):
        assert delay == 0, "the budget only schedules its next turn"
        call = self._Call(func, args)
        self.pending.append(call)
        return call

    def run(self) -> bool:
        """One turn; False if nothing was scheduled."""
        calls, self.pending = self.pending, []
        for call in calls:
            if not call.cancelled:
                call.func(*call.args)
        return bool(calls)


class FakePortal:
    """What a :class:`~evasync.server.telnet.TelnetSession` needs of the portal, in virtual time
    (``reactor`` is a ``task.Clock``); records the lines it is given as ``(sid, line)``."""

    def __init__(self, **budget) -> None:
        from twisted.internet.task import Clock

        from evasync.server.fairness import InputBudget

        self.reactor = Clock()
        self._turns = _Turns()
        self.budget = InputBudget(self._turns, **budget)
        self.sessions: dict = {}
        self.lines: list[tuple[int, str]] = []
        self._next = 1

    def session_opened(self, session) -> bool:
        session.sid, self._next = self._next, self._next + 1
        self.sessions[session.sid] = session
        return True

    def session_input(self, session, line: str) -> None:
        self.lines.append((session.sid, line))

    def session_closed(self, session) -> None:
        self.sessions.pop(session.sid, None)

    def turns(self, count: int = 1) -> None:
        """Let ``count`` reactor turns pass (no time)."""
        for _ in range(count):
            self.reactor.advance(0)
            self._turns.run()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, then the turns until no input waits that could be parsed."""
        self.reactor.advance(seconds)
        while self._turns.run():
            self.reactor.advance(0)

    def connect(self, host: str = "10.0.0.1"):
        """A telnet connection to this portal on a ``StringTransport``: (wire, socket)."""
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        from evasync.server.telnet import TelnetSession, TelnetTransport

        wire = TelnetTransport(TelnetSession, self)
        sock = StringTransport(peerAddress=IPv4Address("TCP", host, 40000 + self._next))
        wire.makeConnection(sock)
        return wire, sock
