"""The two processes of the crash test (``tests/test_crash.py``), each on the real reactor.

:func:`child` schedules persistent delays until it is killed; :func:`loader` is the server
starting again. Both take the store from ``$EVASYNC_DB``. The tasks' callback, :func:`mark`, lives
here so that both processes can import it by name (a function of ``__main__`` cannot be stored).
"""

from __future__ import annotations

import os
import signal
import sys
import time

#: Seconds after scheduling at which the even and the odd tasks are due.
SOON, LATER = 0.3, 2.0

#: Whatever happens to the test, neither process outlives this many seconds.
LIFETIME = 30


def mark(path: str, number: int) -> None:
    """Append ``number pid time`` to the marker file ``path``."""
    with open(path, "a") as markers:
        markers.write(f"{number} {os.getpid()} {time.time():.6f}\n")


def child(markers: str) -> None:
    """Schedule persistent delays for ever, printing ``number task_id`` once each delay() returned.

    The scheduling loop never gives the reactor back, so nothing fires here: every task is left
    for the next process, and the parent kills this one in the middle of the loop.
    """
    signal.alarm(LIFETIME)
    from twisted.internet import reactor

    from evasync import delay

    def schedule_for_ever() -> None:
        number = 0
        while True:
            seconds = SOON if number % 2 == 0 else LATER
            task = delay(seconds, mark, markers, number, persistent=True)
            print(number, task.get_id(), flush=True)
            number += 1

    reactor.callWhenRunning(schedule_for_ever)
    reactor.run()


def loader() -> None:
    """Start again: load the store (twice, to show the second load adds nothing) and run."""
    signal.alarm(LIFETIME)
    from twisted.internet import reactor

    from evasync import TASK_HANDLER

    def load() -> None:
        print("loaded", TASK_HANDLER.load(), TASK_HANDLER.load(), flush=True)

    reactor.callWhenRunning(load)
    reactor.run()


if __name__ == "__main__":
    sys.exit("run child() or loader() through `python -c`, so that mark() is not in __main__")
