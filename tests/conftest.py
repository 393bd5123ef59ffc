"""Shared fixtures: a virtual-time runtime, a clean call record, captured log events, and no
autobahn timer left behind."""

from __future__ import annotations

from typing import Iterator

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from evasync.server import web as _web
from evasync.testing import VirtualRuntime

from . import _support


@pytest.fixture
def rt() -> Iterator[VirtualRuntime]:
    """A fresh current runtime on a virtual clock with a throw-away store."""
    with VirtualRuntime() as runtime:
        yield runtime


@pytest.fixture(autouse=True)
def calls() -> Iterator[list]:
    """``_support.CALLS``, emptied before and after each test."""
    _support.CALLS.clear()
    yield _support.CALLS
    _support.CALLS.clear()


class Logged(list):
    """twisted.logger events seen during a test."""

    def at(self, level: LogLevel) -> list[dict]:
        return [event for event in self if event.get("log_level") is level]

    def texts(self, level: LogLevel) -> list[str]:
        return [formatEvent(event) for event in self.at(level)]


@pytest.fixture
def logged() -> Iterator[Logged]:
    events = Logged()
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory):
    """The site, built once per test run as ``make html`` builds it (with its doctrees)."""
    from ._site import build

    return build(tmp_path_factory.mktemp("site"))


@pytest.fixture(autouse=True)
def autobahn_timers(monkeypatch):
    """autobahn schedules its timers (pings, handshake timeouts) through txaio on the global
    reactor, whatever reactor its factory was given: the timers of the WebSockets made by tests in
    virtual time are cancelled after each test, or a later trial test finds the reactor
    unclean."""
    made = []
    build = _web._WireFactory.__init__

    def recorded(self, *args, **kwargs):
        build(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(_web._WireFactory, "__init__", recorded)
    yield
    for factory in made:
        for call, _ in list(factory._batched_timer._buckets.values()):
            if call.active():
                call.cancel()
