"""What ``evasync start|stop|reload|status`` do, from outside the server.

The running portal is found through its pid file and state file (see :mod:`.rundir`); stop and
reload are signals to it (SIGTERM, SIGHUP), the same a system service manager would send.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from typing import Iterable

from ..store import count_quarantined
from .rundir import RunDir

#: Seconds to wait for the server to be ready, reloaded or stopped.
TIMEOUT = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return True


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)\n"


def _describe(state: dict) -> str:
    web = f", web client {state['web']}" if state.get("web") else ""
    return (f"telnet {state.get('host')}:{state.get('port')}{web}, portal pid {state.get('pid')}, "
            f"game pid {state.get('game_pid')}; log {state.get('log')}")


def exposure_warning(host: str, web: tuple[str, int] | None) -> str | None:
    """What to tell the operator when the server listens beyond loopback (None if it does not).

    The first account made is the superuser, whose ``py`` runs any Python, and telnet and the
    web client carry passwords as plain text: on a network, a stranger could be first.
    """
    exposed = [name for name in (host, web[0] if web else None)
               if name is not None and not _loopback(name)]
    if not exposed:
        return None
    return (f"warning: listening beyond loopback ({', '.join(dict.fromkeys(exposed))}): the "
            "first account created becomes the superuser, whose 'py' runs any Python on this "
            "machine, and passwords cross the network as plain text. Create your own account "
            "first, and serve the demo only on a network you trust.")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def start(host: str, port: int, db: str | None, foreground: bool, speed: float = 1.0,
          console: bool = True, exempt: Iterable[str] = (), typeclass: str | None = None,
          web: tuple[str, int] | None = None, max_connections: int | None = None) -> int:
    """Start the server: in this process (``foreground``) or as a daemon, once it is ready.

    ``web`` is the web client's ``(host, port)``, or None for none; ``max_connections`` the
    players connected at once (None: the portal's default).
    """
    rundir = RunDir(db)
    running = rundir.pid()
    if running is not None:
        print(f"evasync is already running (pid {running}) for {rundir.db}", file=sys.stderr)
        return 1
    warning = exposure_warning(host, web)
    if warning:
        print(warning, file=sys.stderr)
    if foreground:
        from .portal import MAX_CONNECTIONS, run

        return run(host, port, rundir.db, speed, console, exempt, typeclass, web,
                   MAX_CONNECTIONS if max_connections is None else max_connections)
    rundir.create()
    args = [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", "--host", host,
            "--port", str(port), "--speed", repr(speed), "--db", rundir.db]
    for address in exempt:
        args += ["--exempt-address", address]
    if typeclass:
        args += ["--typeclass", typeclass]
    if max_connections is not None:
        args += ["--max-connections", str(max_connections)]
    args += ["--no-web"] if web is None else ["--web-host", web[0], "--web-port", str(web[1])]
    with rundir.open_log() as logfile:  # anything printed before logging starts
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        state = rundir.state()
        if state.get("pid") == child.pid and state.get("ready"):
            print(f"evasync started: {_describe(state)}")
            return 0
        if child.poll() is not None:
            print(f"evasync did not start; the end of {rundir.logfile}:\n"
                  f"{_tail(rundir.logfile)}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"evasync did not get ready in {TIMEOUT:.0f} s; see {rundir.logfile}", file=sys.stderr)
    return 1


def stop(db: str | None) -> int:
    """Stop the server gracefully (persistent tasks stay stored) and wait until it has."""
    rundir = RunDir(db)
    pid = rundir.pid()
    if pid is None:
        print(f"evasync is not running for {rundir.db}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            print("evasync stopped.")
            return 0
        time.sleep(0.05)
    print(f"evasync (pid {pid}) did not stop in {TIMEOUT:.0f} s; see {rundir.logfile}",
          file=sys.stderr)
    return 1


def reload(db: str | None) -> int:
    """Restart the game process with the code on disk, players staying connected."""
    rundir = RunDir(db)
    pid = rundir.pid()
    if pid is None:
        print(f"evasync is not running for {rundir.db}", file=sys.stderr)
        return 1
    before = rundir.state().get("generation", 0)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        state = rundir.state()
        if state.get("generation", 0) > before and state.get("ready"):
            print(f"evasync reloaded: {_describe(state)}")
            return 0
        if not _alive(pid):
            print("evasync stopped during the reload", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"the reload did not finish in {TIMEOUT:.0f} s; the end of {rundir.logfile}:\n"
          f"{_tail(rundir.logfile)}", file=sys.stderr)
    return 1


def status(db: str | None) -> int:
    """Print whether the server runs (exit status 0) or not (3)."""
    rundir = RunDir(db)
    pid = rundir.pid()
    if pid is None:
        print(f"evasync is not running for {rundir.db}")
        return 3
    state = rundir.state()
    game = "ready" if state.get("ready") else "starting or reloading"
    print(f"evasync is running ({game}): {_describe(state)}; store {rundir.db}")
    quarantined = count_quarantined(rundir.db)
    if quarantined:
        print(f"{quarantined} stored task(s) could not be restored and are in the store's "
              f"quarantine table, with the reasons; see {rundir.logfile}")
    return 0
