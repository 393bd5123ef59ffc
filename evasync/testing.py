"""Virtual time for tests and docs: a runtime on a ``task.Clock`` with a throw-away store.

Example (the test suite runs it):

.. code-block:: python

    from evasync import create_object, delay
    from evasync.testing import VirtualRuntime

    with VirtualRuntime() as rt:
        hero = create_object(key="Hero")
        heard = rt.listen(hero)
        delay(10, hero.msg, "ten seconds later")
        rt.advance(10)
        assert heard.take() == ["ten seconds later"]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from typing import Any

from twisted.internet.task import Clock

from .objects import DefaultObject
from .runtime import Runtime, current_runtime as get_runtime_or_none, set_runtime


class Recorder:
    """A session that records what an object is sent (and, with ``echo``, prints it)."""

    def __init__(self, echo: bool = False, prefix: str = "") -> None:
        self.lines: list[str] = []
        self.echo = echo
        self.prefix = prefix

    def send(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.lines.append(line)
            if self.echo:
                print(f"{self.prefix}{line}")

    def take(self) -> list[str]:
        """Return the lines recorded so far and forget them."""
        lines, self.lines = self.lines, []
        return lines


class VirtualRuntime(Runtime):
    """A :class:`~evasync.runtime.Runtime` whose time only moves when you :meth:`advance` it.

    Args:
        db_path: Store file; default a fresh file in a temporary directory, removed on close.
        install: Make it the current runtime now (it is also installed by ``with``).

    Used as a context manager it is current inside the block and closed at its end, the
    previous runtime coming back.
    """

    def __init__(self, db_path: str | os.PathLike | None = None, install: bool = True) -> None:
        self._remove_tmpdir = None
        if db_path is None:
            tmpdir = tempfile.mkdtemp(prefix="evasync-")
            db_path = os.path.join(tmpdir, "evasync.db")
            # Removed by close(), or at the latest when the interpreter exits (a runtime made
            # at a prompt is rarely closed).
            self._remove_tmpdir = weakref.finalize(self, shutil.rmtree, tmpdir, True)
        self._listeners: list[tuple[int, Recorder]] = []
        self._installed = install
        super().__init__(clock=Clock(), db_path=db_path)
        self._previous = set_runtime(self) if install else None

    def __enter__(self) -> "VirtualRuntime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def now(self) -> float:
        """Seconds of virtual time since the runtime was made."""
        return self.clock.seconds()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, firing every call due on the way in time order.

        Unlike a bare ``Clock.advance``, a call scheduled by another call (a chain of delays)
        fires at its own time within the same advance.
        """
        if seconds < 0:
            raise ValueError(f"cannot go back in time ({seconds} s)")
        clock = self.clock
        target = clock.seconds() + seconds
        while True:
            pending = [call.getTime() for call in clock.getDelayedCalls()]
            due = min(pending, default=None)
            if due is None or due > target:
                break
            clock.advance(max(0.0, due - clock.seconds()))
        clock.advance(target - clock.seconds())

    def wait_for(self, deferred: Any, timeout: float = 10.0) -> Any:
        """Wait, in real time, for work running off the reactor (``run_async``) to report back.

        Spins the real reactor one step at a time, so results that threads and worker
        processes hand back with ``callFromThread`` are delivered; virtual time does not move.

        Returns:
            The Deferred's result (a :class:`~twisted.python.failure.Failure` if it failed).

        Raises:
            TimeoutError: if ``deferred`` has not fired within ``timeout`` seconds.
        """
        reactor = self.reactor
        deadline = time.monotonic() + timeout
        while not deferred.called:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{deferred!r} did not fire within {timeout} s")
            reactor.iterate(0.005)
        return deferred.result

    def listen(self, obj: DefaultObject, echo: bool = False, prefix: str = "") -> Recorder:
        """Connect a :class:`Recorder` to ``obj``; it stays connected across :meth:`reload`."""
        recorder = Recorder(echo=echo, prefix=prefix)
        obj.sessions.append(recorder)
        self._listeners.append((obj.id, recorder))
        return recorder

    def disconnect(self, obj: DefaultObject, session: Any = None) -> int:
        """A connection closed (see :meth:`Runtime.disconnect`); it is not reattached on reload."""
        self._listeners = [(i, r) for i, r in self._listeners
                           if not (i == obj.id and (session is None or r is session))]
        return super().disconnect(obj, session)

    def reload(self) -> int:
        """Simulate a graceful reload (see :meth:`Runtime.reload`), keeping listeners connected."""
        loaded = super().reload()
        for obj_id, recorder in self._listeners:
            try:
                self.objects.get(obj_id).sessions.append(recorder)
            except LookupError:
                pass
        return loaded

    def close(self) -> None:
        """Close the runtime, restore the previous current runtime, remove the temporary store."""
        super().close()
        if self._installed and get_runtime_or_none() is self:
            set_runtime(self._previous)
        self._installed = False
        if self._remove_tmpdir is not None:
            self._remove_tmpdir()
