"""The example game of "Your own game on evasync" works where a reader would put it.

``docs/examples/mygame`` is copied to a temporary folder and installed, with evasync built from
a copy of this checkout, into a fresh virtual environment; there its own tests and pages pass,
and ``evasync start --typeclass`` serves its characters over a real socket on loopback.

Nothing is downloaded: the fresh environment sees the third-party packages of the environment
running these tests (Twisted, pytest, Sybil, setuptools) through a ``.pth`` line, and pip runs
with ``--no-index --no-build-isolation``. That line adds their folder only, not the ``.pth``
files in it, so the editable evasync of this checkout is not visible there: the game gets the
evasync that was just built and installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import pytest

from evasync.server.rundir import RunDir

from ._server_support import Client, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "mygame"
INSTALL_TIMEOUT = 600  # a busy two-core machine builds slowly
# Left out of the copy of the checkout: what git ignores, and git itself.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "_build", "build", "*.egg-info",
                                     "__pycache__", ".pytest_cache", "*.db", "*.db-*", "*.log",
                                     "*.run", "_screenshots")


class Venv:
    """A fresh virtual environment that borrows this one's third-party packages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def create(self) -> "Venv":
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.path)],
                       check=True, timeout=120)
        own = self.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
        (Path(own.stdout.strip()) / "borrowed-packages.pth").write_text("\n".join(ours) + "\n")
        return self

    def run(self, *args: str, cwd: Path, timeout: float = INSTALL_TIMEOUT
            ) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], cwd=cwd, env=self.env, timeout=timeout,
                              capture_output=True, text=True)

    def run_python(self, code: str) -> subprocess.CompletedProcess:
        done = self.run(self.python, "-c", code, cwd=self.path, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    def pip_install(self, *args: str, cwd: Path) -> str:
        done = self.run(self.python, "-m", "pip", "install", "--no-index",
                        "--no-build-isolation", *args, cwd=cwd)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"pip install {' '.join(args)} failed:\n{output}"
        return output


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    """The example game, installed with evasync in a fresh virtual environment."""
    top = tmp_path_factory.mktemp("own-game")
    checkout = top / "evasync"
    shutil.copytree(ROOT, checkout, ignore=NOT_SOURCES)
    project = top / "mygame"
    shutil.copytree(EXAMPLE, project, ignore=NOT_SOURCES)
    venv = Venv(top / "venv").create()
    # As the page says: evasync from a clone (a plain install), then the game, editable.
    evasync_output = venv.pip_install(str(checkout), cwd=top)
    venv.pip_install("-e", ".", cwd=project)
    return venv, project, evasync_output


def test_installing_evasync_prints_no_deprecation_warning(game):
    venv, project, evasync_output = game
    assert "Successfully installed evasync" in evasync_output
    assert "deprecat" not in evasync_output.lower(), evasync_output


def test_the_game_uses_the_evasync_installed_in_its_environment(game):
    venv, project, _ = game
    where = venv.run_python("import evasync, mygame; print(evasync.__file__); "
                            "print(mygame.__file__)").stdout.split()
    assert where[0].startswith(str(venv.path)), where
    assert where[1] == str(project / "mygame" / "__init__.py"), where


def test_the_game_passes_its_own_tests_and_pages(game):
    venv, project, _ = game
    done = venv.run(venv.python, "-m", "pytest", "-v", "-p", "no:cacheprovider", cwd=project)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    ran = re.findall(r"^(\S+?)::\S+ PASSED", output, re.M)
    assert ran.count("tests/test_commands.py") == 4, output
    assert ran.count("docs/playing.md") == 2, output
    assert re.search(r"^=+ 6 passed in ", output, re.M), output


@contextlib.contextmanager
def game_server(evasync: Path, cwd: Path, env: dict) -> Iterator[int]:
    """``evasync start --typeclass mygame.characters:Character`` in ``cwd``; yields its port."""
    db = cwd / "game.db"
    rundir = RunDir(db)
    with open(cwd / "server.out", "wb") as log:
        server = subprocess.Popen(
            [evasync, "start", "--foreground", "--quiet", "--port", "0", "--speed", "10",
             "--typeclass", "mygame.characters:Character", "--db", db],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def ready():
        assert server.poll() is None, (cwd / "server.out").read_text()
        state = rundir.state()
        return state if state.get("ready") and state.get("pid") == server.pid else None

    try:
        state = wait_for(ready, timeout=60, what="the game server to be ready")
        assert state["host"] == "127.0.0.1"
        yield state["port"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(timeout=60) == 0, (cwd / "server.out").read_text()
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def go_fishing(port: int) -> None:
    client = Client(port)
    try:
        client.expect("create <name> <password>", timeout=30)
        client.login("Angler")
        client.command("fish", "You cast your line into the pond.")
        client.expect("you land a perch", timeout=30)  # 5 game seconds at speed 10
    finally:
        client.close()


def test_the_game_server_answers_a_command_over_telnet(game):
    venv, project, _ = game
    with game_server(venv.path / "bin" / "evasync", project, venv.env) as port:
        go_fishing(port)


def test_a_game_installed_into_site_packages_is_served_too(game, tmp_path):
    """Installed as a regular package, the game is no longer "game code outside the Python
    installation": naming its typeclass to ``evasync start`` is what makes the store trust it.
    Started away from the game's folder, so only the installed copy can be found.
    (Runs last in this module: it replaces the editable install.)"""
    venv, project, _ = game
    venv.pip_install(".", cwd=project)
    where = venv.run_python("import mygame; print(mygame.__file__)").stdout.strip()
    assert where.startswith(str(venv.path)), where
    with game_server(venv.path / "bin" / "evasync", tmp_path, venv.env) as port:
        go_fishing(port)


def test_a_game_that_is_not_installed_is_served_from_its_folder(tmp_path):
    """The console script has no current folder on its path; the server finds the game anyway."""
    project = tmp_path / "mygame"
    shutil.copytree(EXAMPLE, project, ignore=NOT_SOURCES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with game_server(Path(sys.executable).parent / "evasync", project, env) as port:
        go_fishing(port)


def test_a_typeclass_that_does_not_import_is_refused_before_anything_starts(tmp_path):
    done = subprocess.run(
        [Path(sys.executable).parent / "evasync", "start", "--typeclass",
         "mygame.characterz:Character", "--db", tmp_path / "game.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "'mygame.characterz:Character' cannot be used" in done.stderr
    assert "pip install -e path/to/game" in done.stderr
    assert not (tmp_path / "game.run").exists()
