"""Where a server keeps its pid, socket, state and log files: next to its store.

For the store ``evasync.db`` that is the folder ``evasync.run/`` (pid file, unix socket, state)
and the log file ``evasync.log``. The folder ignores itself for git, so a server started in a
checkout leaves the work tree clean. The store is known by its real path: a symbolic link to it
finds the same folder (and so the server already running on it). The folder and the log are
private to the user (0700, 0600): the log holds every ``py`` line the superuser typed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import IO, Any

from ..store import default_path

#: Longest unix socket path we use (the kernel's limit is 107 bytes on Linux).
_MAX_SOCKET_PATH = 100


class RunDir:
    """The files of the server whose store is ``db_path`` (default ``$EVASYNC_DB``)."""

    def __init__(self, db_path: str | os.PathLike | None = None) -> None:
        self.db = os.path.realpath(os.fspath(db_path) if db_path is not None else default_path())
        base = os.path.splitext(self.db)[0]
        self.path = base + ".run"
        self.logfile = base + ".log"
        self.pidfile = os.path.join(self.path, "portal.pid")
        self.statefile = os.path.join(self.path, "state.json")
        socket = os.path.join(self.path, "portal.sock")
        if len(socket.encode()) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(self.path.encode()).hexdigest()[:16]
            socket = os.path.join(tempfile.gettempdir(), f"evasync-{os.getuid()}-{digest}.sock")
        self.socket = socket

    def create(self) -> None:
        """Make the folder (private to this user), ignored by git."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        ignore = os.path.join(self.path, ".gitignore")
        if not os.path.exists(ignore):
            with open(ignore, "w") as f:
                f.write("*\n")

    def open_log(self) -> IO[str]:
        """The log file, opened for appending; created private to this user (or made so)."""
        fd = os.open(self.logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def pid(self) -> int | None:
        """The pid of the running portal, or None (a stale pid file does not count)."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def write_pid(self) -> None:
        with open(self.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    def state(self) -> dict[str, Any]:
        """What the portal last wrote about itself ({} if nothing)."""
        try:
            with open(self.statefile) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        """Replace the state file atomically (readers never see half a file)."""
        temporary = self.statefile + ".tmp"
        with open(temporary, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(temporary, self.statefile)

    def clean(self) -> None:
        """Remove the pid, state and socket files (the portal has stopped)."""
        for path in (self.pidfile, self.statefile, self.socket):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
