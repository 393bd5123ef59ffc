"""What a telnet connection and a web page have in common on the portal: a session.

A session knows who is on it (set by the game when a character logs in), closes itself when
nobody logs in for :data:`LOGIN_IDLE` seconds, hands the portal its input lines, and watches
its output.

Telnet and web sessions register as their socket's push producer. When the socket's write buffer
fills up (the player's program is not reading), Twisted pauses the session: from then on its
input is not read either (what a client sends may ask for answers that would pile up too), and
the bytes written meanwhile are counted. Past :data:`BACKLOG_MAX` the player is hung up on; once
the buffer drains, both go back to normal.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

if TYPE_CHECKING:
    from .fairness import LineInput
    from .portal import Portal

log = Logger(namespace="evasync.server.session")

#: Seconds without a line before a connection nobody has logged in on is closed.
LOGIN_IDLE = 300.0

#: Bytes of output waiting for a player who does not read, before the player is hung up on.
BACKLOG_MAX = 1 << 20

#: Dropped from input: control characters (tab kept), U+FFFD (what invalid bytes decode to),
#: and the invisible characters that make a line look other than it reads: the zero-width
#: space and word joiner, the line and paragraph separators, the bidirectional embeddings,
#: overrides and isolates (U+202E shows "say lol" backwards to everyone else), and U+FEFF.
#: The joiners and marks some scripts need (U+200C, U+200D, U+200E, U+200F) are kept.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b\u2028-\u202e\u2060-\u2064"
                      "\u2066-\u2069\ufeff\ufffd]")


def clean(raw: bytes) -> str:
    """An input line as text: UTF-8 with invalid bytes, control characters and invisible
    direction and spacing characters dropped."""
    return _CONTROL.sub("", raw.decode("utf-8", "replace"))


@implementer(IPushProducer)
class Session(TimeoutMixin):
    """One player's connection, as the portal sees it; a subclass speaks its protocol.

    A subclass calls :meth:`_opened` once connected (with its socket registered), :meth:`_lost`
    when the connection is gone and :meth:`_take_line` with each input line, and provides
    ``send``, ``close`` and ``abort``.

    Attributes:
        sid: The portal's id for the connection (unique in the portal's lifetime).
        address: The peer, as ``host:port``.
        host: The peer's address alone (what per-address limits count).
        character_id: The character logged in on it (set by the game), or None.
        name: That character's name.
        greeted: True once the game has been told of the connection.
        held: Input lines kept while no game process is connected.
        held_dropped: True if lines were dropped because ``held`` was full.
        input: Its :class:`~evasync.server.fairness.LineInput`, once connected.
    """

    _backlog: int | None = None  # bytes written since the socket's buffer filled up

    def __init__(self, portal: "Portal") -> None:
        self.portal = portal
        self.sid = 0
        self.address = ""
        self.host = ""
        self.character_id: int | None = None
        self.name = ""
        self.greeted = False
        self.held: deque[str] = deque()
        self.held_dropped = False
        self.input: LineInput | None = None
        self._open = False

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.sid} {self.address} "
                f"{self.name or '(not logged in)'}>")

    # -- connection ------------------------------------------------------------------------

    def _peer(self, peer: IAddress) -> None:
        self.host = str(getattr(peer, "host", "?"))
        self.address = f"{self.host}:{getattr(peer, 'port', '?')}"

    def _opened(self) -> None:
        """Start the login timeout and tell the portal (which may refuse, and close it)."""
        self._open = True
        self.callLater = self.portal.reactor.callLater  # TimeoutMixin's clock
        self.setTimeout(LOGIN_IDLE)
        if not self.portal.session_opened(self):
            self._open = False

    def _lost(self) -> None:
        self.setTimeout(None)
        if self.input is not None:
            self.input.close()
        if self._open:
            self._open = False
            self.portal.session_closed(self)

    def logged_in(self, character_id: int | None, name: str) -> None:
        """The game logged a character in on this connection (None: logged out)."""
        self.character_id, self.name = character_id, name
        self.setTimeout(LOGIN_IDLE if character_id is None else None)

    def timeoutConnection(self) -> None:
        log.info("{session}: no line in {idle:.0f} s without logging in; closing", session=self,
                 idle=LOGIN_IDLE)
        self.close(f"You did not log in for {LOGIN_IDLE / 60:.0f} minutes: goodbye.")

    def _take_line(self, raw: bytes) -> None:
        if self.character_id is None:
            self.resetTimeout()
        self.portal.session_input(self, clean(raw))

    def send(self, text: str, end: str = "\n") -> None:
        """Show ``text`` to the player (``end`` ends it: "" continues the line)."""
        raise NotImplementedError

    def close(self, text: str | None = None) -> None:
        """Say ``text`` and hang up (after what was written has been sent)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection without sending what is waiting."""
        raise NotImplementedError

    # -- a player who stops reading ------------------------------------------------------

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
