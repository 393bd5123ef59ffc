"""A server killed with SIGKILL loses no persistent task: real processes, real reactor, real time.

A child process schedules persistent delays in a loop and is killed in the middle of it. A new
process loads the store and runs; every task the child stored fires exactly once (none had fired
before the kill), the overdue ones at once in due order, the others at their original time.
"""

from __future__ import annotations

import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

from . import _crashproc
from ._store_files import stored_rows

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: How many tasks the child must have reported before it is killed.
REPORTED = 300

#: The longest the test waits for anything (the whole test takes about 3 s).
PATIENCE = 8.0


def start(tmp_path: pathlib.Path, name: str, call: str) -> subprocess.Popen:
    env = dict(os.environ, EVASYNC_DB=str(tmp_path / "game.db"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-c", f"from tests._crashproc import {name}; {name}({call})"],
        cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
        stderr=open(tmp_path / f"{name}.stderr", "w"))


def lines_of(process: subprocess.Popen) -> "queue.Queue[str]":
    """The process's stdout lines, read by a thread so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def next_line(lines: "queue.Queue[str]", process: subprocess.Popen, tmp_path, name) -> str:
    try:
        return lines.get(timeout=PATIENCE)
    except queue.Empty:
        raise AssertionError(f"{name} said nothing for {PATIENCE} s (exit {process.poll()}); "
                             f"stderr:\n{(tmp_path / f'{name}.stderr').read_text()}") from None


def stored_tasks(path: pathlib.Path) -> dict[int, float]:
    """Task id -> due of what a killed process left, read without changing it (the next start
    moves the task log's rows into the database)."""
    return {row[0]: row[1] for row in stored_rows(path)}


def read_markers(path: pathlib.Path) -> list[tuple[int, int, float]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        number, pid, when = line.split()
        rows.append((int(number), int(pid), float(when)))
    return rows


def test_no_persistent_task_is_lost_when_the_server_is_killed(tmp_path):
    markers = tmp_path / "markers.txt"
    child = start(tmp_path, "child", repr(str(markers)))
    loader = None
    try:
        child_lines = lines_of(child)
        reported = {}  # task number -> task id, printed once its delay() had returned
        while len(reported) < REPORTED:
            number, task_id = next_line(child_lines, child, tmp_path, "child").split()
            reported[int(number)] = int(task_id)
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
        assert child.wait(timeout=PATIENCE) == -signal.SIGKILL
        time.sleep(0.1)  # let the reader thread drain what the child printed before dying
        while not child_lines.empty():
            line = child_lines.get()
            if line.endswith("\n"):  # not a line cut short by the kill
                number, task_id = line.split()
                reported[int(number)] = int(task_id)

        stored = stored_tasks(tmp_path / "game.db")  # task id -> due (wall-clock time)
        assert set(reported.values()) <= set(stored), "a task delay() returned was not stored"
        assert not markers.exists(), "the child ran a task before it was killed"

        # The server stays down until every SOON task is overdue, then starts again.
        time.sleep(max(0.0, killed_at + _crashproc.SOON + 0.05 - time.time()))
        loader = start(tmp_path, "loader", "")
        loader_lines = lines_of(loader)
        assert next_line(loader_lines, loader, tmp_path, "loader").split() == \
            ["loaded", str(len(stored)), "0"]

        deadline = time.monotonic() + PATIENCE
        while len(read_markers(markers)) < len(stored) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a task firing twice would show up now
    finally:
        for process in (child, loader):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    fired = read_markers(markers)
    numbers = [number for number, _, _ in fired]
    # The child may have stored one task more than it reported (killed just after the commit).
    assert set(reported) <= set(numbers), "a reported task never fired"
    assert len(numbers) == len(set(numbers)) == len(stored), "a task fired twice or not at all"
    assert {pid for _, pid, _ in fired} == {loader.pid}

    overdue = [(stored[reported[n]], reported[n]) for n in numbers
               if n in reported and n % 2 == 0]
    assert len(overdue) >= REPORTED // 2
    assert overdue == sorted(overdue), "the overdue tasks did not fire in due order"
    for number, _, when in fired:
        if number in reported and number % 2 == 1:
            due = stored[reported[number]]
            assert due - 0.01 <= when <= due + 2.0, f"task {number} fired {when - due:+.3f} s off"
