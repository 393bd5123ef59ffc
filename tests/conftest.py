"""Shared fixtures: a virtual-time runtime, a clean call record, and captured log events."""

from __future__ import annotations

from typing import Iterator

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

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
