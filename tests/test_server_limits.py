"""The game's limits on logins and account creation, and the bounded password-hashing pool, in
virtual time (the real-socket side is in ``test_server.py``)."""

from __future__ import annotations

import threading

import pytest
from twisted.internet.task import Clock

from evasync.server.accounts import Busy, HashPool
from evasync.server.limits import Backoff, Window


def test_failures_make_each_next_attempt_wait_longer_until_forgotten():
    clock = Clock()
    backoff = Backoff(clock, free=3, first=2.0, longest=10.0, forget=900.0)
    for _ in range(3):
        assert backoff.wait("ann") == 0
        backoff.failed("ann")
    assert backoff.wait("ann") == 2.0
    clock.advance(2)
    assert backoff.wait("ann") == 0
    waits = []
    for _ in range(4):
        backoff.failed("ann")
        waits.append(backoff.wait("ann"))
    assert waits == [4.0, 8.0, 10.0, 10.0]
    assert backoff.wait("bob") == 0
    clock.advance(900)
    assert backoff.wait("ann") == 0  # forgotten
    backoff.failed("bob")
    backoff.succeeded("bob")
    assert backoff.wait("bob") == 0


def test_a_window_allows_so_many_events_per_period():
    clock = Clock()
    window = Window(clock, count=2, period=60.0)
    window.add("10.0.0.1")
    clock.advance(10)
    window.add("10.0.0.1")
    assert window.wait("10.0.0.1") == 50.0 and window.wait("10.0.0.2") == 0
    clock.advance(50)
    assert window.wait("10.0.0.1") == 0


def test_limits_remember_a_bounded_number_of_keys():
    clock = Clock()
    backoff = Backoff(clock, free=0, first=5.0, longest=5.0, forget=900.0, max_keys=100)
    window = Window(clock, count=1, period=60.0, max_keys=100)
    for key in range(1000):
        backoff.failed(key)
        window.add(key)
    assert backoff.wait(999) == 5.0 and window.wait(999) == 60.0
    assert backoff.wait(0) == 0 and window.wait(0) == 0  # the oldest were forgotten
    assert len(backoff._failures) == len(window._times) == 100


class _Reactor:
    """Enough of a reactor for a thread pool: results come back through ``callFromThread``."""

    def __init__(self) -> None:
        self.calls: list = []
        self.stoppers: list = []

    def callFromThread(self, func, *args, **kwargs) -> None:
        self.calls.append((func, args, kwargs))

    def addSystemEventTrigger(self, phase, event, func) -> None:
        self.stoppers.append(func)

    def run_calls(self) -> None:
        while self.calls:
            func, args, kwargs = self.calls.pop(0)
            func(*args, **kwargs)


def test_the_hash_pool_refuses_work_beyond_its_queue():
    reactor = _Reactor()
    pool = HashPool(reactor, threads=1, queue=3)
    gate = threading.Event()
    results = []
    try:
        for number in range(3):
            pool.run(lambda n: gate.wait(10) and n, number).addCallback(results.append)
        with pytest.raises(Busy, match="3 password hashes are waiting"):
            pool.run(lambda: None)
    finally:
        gate.set()
        for stop in reactor.stoppers:
            stop()  # joins the worker once it is done
    reactor.run_calls()
    assert results == [0, 1, 2] and pool.pending == 0
