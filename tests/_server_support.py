"""Helpers for the demo server's tests: a server in subprocesses and a plain telnet client.

Servers run with ``--speed 10`` (game time ten times faster: the howto's ten-second commands
take one second) on a free port, with a store in the test's temporary folder. Waiting is always
polling with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from evasync.server.rundir import RunDir

SPEED = 10
TIMEOUT = 15.0
ROOT = Path(__file__).resolve().parent.parent


def evasync(*args: str, db: Path, timeout: float = 60) -> subprocess.CompletedProcess:
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


class Server:
    """``evasync start --foreground`` in a subprocess, for one store in ``folder``."""

    def __init__(self, folder: Path, speed: float = SPEED, port: int = 0,
                 web_port: int = 0) -> None:
        self.folder = folder
        self.ports = ["--port", str(port), "--web-port", str(web_port)]
        self.db = folder / "evasync.db"
        self.rundir = RunDir(self.db)
        self.speed = speed
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.output = open(self.folder / "server.out", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", *self.ports,
             "--speed", str(self.speed), "--db", str(self.db)],
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

    def client(self, name: str | None = None, password: str = "secret",
               create: bool = True) -> "Client":
        """A connected client; logged in as ``name`` (created, or connected) if given."""
        client = Client(self.port)
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
        """The persistent tasks in the store (read with a second connection)."""
        with sqlite3.connect(self.db) as conn:
            return conn.execute("SELECT id, callback, args FROM tasks").fetchall()


_TELNET = re.compile(rb"\xff\xfa.*?\xff\xf0|\xff[\xfb-\xfe].|\xff[\xf0-\xfa]", re.S)


class Client:
    """A line-based telnet client on a blocking socket: ``send`` lines, ``expect`` text.

    Telnet negotiation from the server is stripped and left unanswered (allowed: a client may
    ignore options). Everything received is kept in ``text``; ``expect`` searches from the end
    of its previous match.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
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
                                     f"the last match:\n{self.text[self.pos:]!r}")
            self._read(min(left, 0.2))

    def absent(self, pattern: str, within: float) -> None:
        """Check that ``pattern`` does not arrive within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.closed:
            self._read(min(0.1, max(0.0, deadline - time.monotonic())))
        assert pattern not in self.text[self.pos:], f"unexpected {pattern!r} in {self.text!r}"

    def command(self, line: str, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        self.send(line)
        return self.expect(pattern, timeout)

    def login(self, name: str, password: str = "secret", create: bool = True) -> None:
        if create:
            self.command(f"create {name} {password}", f"Welcome, {name}!")
        else:
            self.command(f"connect {name} {password}", f"Welcome back, {name}!")

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        wait_for(lambda: self._read(0.1) or self.closed, timeout, "the connection to close")

    def close(self) -> None:
        self.sock.close()
