"""What a session does when its player stops reading: hold its input, then hang up.

Telnet and web sessions register as their socket's push producer. When the socket's write buffer
fills up (the player's program is not reading), Twisted pauses the session: from then on its
input is not read either (what a client sends may ask for answers that would pile up too), and
the bytes written meanwhile are counted. Past :data:`BACKLOG_MAX` the player is hung up on; once
the buffer drains, both go back to normal.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger(namespace="evasync.server.output")

#: Bytes of output waiting for a player who does not read, before the player is hung up on.
BACKLOG_MAX = 1 << 20


@implementer(IPushProducer)
class OutputBacklog:
    """Mixin of a session: ``portal``, ``input`` (a LineInput or None) and ``_open`` are the
    session's; :meth:`abort` drops its connection at once."""

    portal: Any
    input: Any
    _open: bool
    _backlog: int | None = None  # bytes written since the socket's buffer filled up

    def overflowed(self, data: bytes) -> bool:
        """Count ``data``, about to be written; True if the player was hung up on instead (it
        must not be written then)."""
        if self._backlog is None:
            return False
        self._backlog += len(data)
        if self._backlog <= BACKLOG_MAX:
            return False
        log.warn("{session}: not reading its output; hanging up", session=self)
        self._open = False
        self.abort()
        self.portal.session_closed(self)
        return True

    def abort(self) -> None:
        """Drop the connection without sending what is waiting."""
        raise NotImplementedError

    def pauseProducing(self) -> None:
        if self._backlog is None:  # called again on every write while the buffer is full
            self._backlog = 0
            if self.input is not None:
                self.input.throttle.hold("output")

    def resumeProducing(self) -> None:
        self._backlog = None
        if self.input is not None:
            self.input.throttle.release("output")

    def stopProducing(self) -> None:
        pass
