"""A real MUD client, tintin++ (Debian's ``tintin++``), plays a scripted session on the server.

tintin++ needs a terminal, so it runs on a pseudo-terminal; its script connects, makes an
account, orders a dish (a delayed command: it arrives ten game seconds, one real second, later),
logs the session to a file and quits when the dish has come.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import time

import pytest

from ._server_support import Server

TINTIN = shutil.which("tt++") or next(
    (path for path in ("/usr/games/tt++", "/usr/bin/tt++") if os.path.exists(path)), None)

SCRIPT = """\
#config {{log}} {{plain}}
#action {{create <name> <password>}} {{create Tintin s3cret-pw}} {{5}}
#action {{Welcome, Tintin!}} {{order hot soup}}
#action {{The cook brings your %*}} {{#delay {{0.5}} {{#end}}}}
#session demo 127.0.0.1 {port}
#log overwrite {{{log}}}
#delay {{60}} {{#end}}
"""


def run_on_a_terminal(args: list[str], cwd: str, timeout: float) -> bytes:
    """Run ``args`` on a pseudo-terminal of 120x40 until it exits; return what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                               env=dict(os.environ, TERM="xterm"), start_new_session=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    output += os.read(master, 65536)
                except OSError:
                    break
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)
    return output


@pytest.mark.skipif(TINTIN is None, reason="tintin++ is not installed (apt-get install tintin++)")
def test_tintin_creates_an_account_and_gets_its_order(tmp_path):
    server = Server(tmp_path).start()
    try:
        log = tmp_path / "tintin.log"
        script = tmp_path / "session.tin"
        script.write_text(SCRIPT.format(port=server.port, log=log))
        output = run_on_a_terminal([TINTIN, "-G", str(script)], str(tmp_path), timeout=90)
        seen = log.read_text(errors="replace") if log.exists() else ""
        assert "Welcome, Tintin! Your character has been created." in seen, (seen, output[-2000:])
        assert "You order hot soup. The cook disappears into the kitchen." in seen
        assert "The cook brings your hot soup, steaming hot." in seen
    finally:
        server.close()
    assert "account Tintin created" in server.log()
