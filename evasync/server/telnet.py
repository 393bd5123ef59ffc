"""A player's telnet connection, on the portal: bytes in, clean lines out; text in, bytes out.

Option negotiation is ``twisted.conch.telnet``'s: the server offers SGA (no go-aheads) and asks
for NAWS (window size); a client may turn on BINARY either way; everything else is refused.
Text is UTF-8 both ways.

Input is made safe before it goes anywhere: control characters and invalid UTF-8 are dropped,
a line longer than :data:`MAX_LINE` bytes is cut (the player is told), and a connection that
sends more than :data:`RATE` lines a second (after a burst of :data:`BURST`) has its lines queued
and its socket no longer read until the queue drains, so a flood slows only the flooder.
A player who stops reading is hung up on once :data:`BACKLOG_MAX` bytes wait for them.
"""

from __future__ import annotations

import re
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.conch import telnet
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

if TYPE_CHECKING:
    from .portal import Portal

log = Logger(namespace="evasync.server.telnet")

MAX_LINE = 2000         # bytes in one input line
RATE = 20.0             # lines a second, sustained
BURST = 60              # lines at once (a paste)
QUEUE_MAX = 200         # lines held back from one flooding connection before dropping
BYTE_RATE = 32_768      # raw input bytes a second, sustained (telnet commands included)
BYTE_BURST = 262_144    # raw input bytes at once
BACKLOG_MAX = 1 << 20   # bytes of output waiting for a player who does not read, before hanging up

BINARY = b"\x00"  # RFC 856 (conch names no constant for it)
NAWS = telnet.NAWS
_WANTED_LOCAL = {telnet.SGA, BINARY}   # we will, if asked
_WANTED_REMOTE = {NAWS, BINARY, telnet.SGA}  # the client may

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ufffd]")


def clean(raw: bytes) -> str:
    """An input line as text: UTF-8 with invalid bytes and control characters dropped."""
    return _CONTROL.sub("", raw.decode("utf-8", "replace"))


class TelnetTransport(telnet.TelnetTransport):
    """conch's telnet parser, fed ordinary data in runs rather than byte by byte.

    A stray or unknown command after IAC is dropped instead of ending the connection. Raw bytes
    are rate-limited per connection (a token bucket of :data:`BYTE_RATE` a second): a client
    flooding telnet commands, which never make a line, is read more slowly instead of costing
    everyone else reactor time.
    """

    _byte_tokens = float(BYTE_BURST)
    _byte_stamp: float | None = None
    _byte_paused = False

    def dataReceived(self, data: bytes) -> None:
        self._charge(len(data))
        pos, end = 0, len(data)
        while pos < end:
            if self.state == "data":
                cut = end
                for special in (telnet.IAC, b"\r"):
                    found = data.find(special, pos, cut)
                    if found != -1:
                        cut = found
                if cut > pos:
                    self.applicationDataReceived(data[pos:cut])
                    pos = cut
                    if pos == end:
                        return
            byte = data[pos:pos + 1]
            pos += 1
            try:
                super().dataReceived(byte)
            except ValueError:  # IAC followed by a byte that is no telnet command
                self.state = "data"
            except Exception:  # a confused negotiation must not cost the player the connection
                log.failure("telnet negotiation from {peer}", peer=self.getPeer(),
                            level=LogLevel.error)
                self.state = "data"
            if self.transport is None or self.transport.disconnecting:
                return

    def _charge(self, size: int) -> None:
        reactor = self.protocol.portal.reactor
        now = reactor.seconds()
        if self._byte_stamp is not None:
            self._byte_tokens = min(float(BYTE_BURST),
                                    self._byte_tokens + (now - self._byte_stamp) * BYTE_RATE)
        self._byte_stamp = now
        self._byte_tokens -= size
        if self._byte_tokens < 0 and not self._byte_paused and self.transport is not None:
            self._byte_paused = True
            self.transport.pauseProducing()
            reactor.callLater(-self._byte_tokens / BYTE_RATE, self._resume_bytes)

    def _resume_bytes(self) -> None:
        self._byte_paused = False
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.resumeProducing()


@implementer(IPushProducer)
class TelnetSession(telnet.TelnetProtocol):
    """One player's connection. The portal knows it by ``sid``.

    Attributes:
        sid: The portal's id for the connection (unique in the portal's lifetime).
        address: The peer, as ``host:port``.
        character_id: The character logged in on it (set by the game), or None.
        name: That character's name.
        greeted: True once the game has been told of the connection.
        held: Input lines kept while no game process is connected.
    """

    def __init__(self, portal: "Portal") -> None:
        self.portal = portal
        self.sid = 0
        self.address = ""
        self.character_id: int | None = None
        self.name = ""
        self.greeted = False
        self.held: deque[str] = deque()
        self.held_dropped = False
        self.width = 80
        self._buffer = b""
        self._discarding = False
        self._tokens = float(BURST)
        self._stamp = 0.0
        self._queue: deque[str] = deque()
        self._dropped = 0
        self._drain_call: Any = None
        self._paused = False
        self._open = False
        self._backlog: int | None = None  # bytes written since the socket's buffer filled up
        self._throttled = False  # told once per connection

    def __repr__(self) -> str:
        return f"<TelnetSession {self.sid} {self.address} {self.name or '(not logged in)'}>"

    # -- connection ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.address = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self._stamp = self.portal.reactor.seconds()
        self.transport.negotiationMap[NAWS] = self._window_size
        for offer in (self.transport.will(telnet.SGA), self.transport.do(NAWS)):
            offer.addErrback(lambda failure: None)  # refused, or the client left: both fine
        self._open = True
        # The socket tells us (pauseProducing) when its send buffer is full: the player is
        # not reading what we write.
        self.transport.transport.registerProducer(self, True)
        self.portal.session_opened(self)

    def connectionLost(self, reason: Any = None) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        if self._open:
            self._open = False
            self.portal.session_closed(self)

    def enableLocal(self, option: bytes) -> bool:
        return option in _WANTED_LOCAL

    def enableRemote(self, option: bytes) -> bool:
        return option in _WANTED_REMOTE

    def disableLocal(self, option: bytes) -> None:
        pass

    def disableRemote(self, option: bytes) -> None:
        pass

    def _window_size(self, data: list[bytes]) -> None:
        raw = b"".join(data)
        if len(raw) == 4:
            self.width = int.from_bytes(raw[:2], "big") or 80

    # -- output ----------------------------------------------------------------------------

    def send(self, text: str, end: str = "\n") -> None:
        """Show ``text`` to the player, as one or more lines (``end`` ends the last one)."""
        if not self._open:
            return
        data = (text.replace("\r\n", "\n") + end).encode("utf-8")
        if self._backlog is not None:
            self._backlog += len(data)
            if self._backlog > BACKLOG_MAX:
                log.warn("{session}: not reading its output; hanging up", session=self)
                self._open = False
                self.transport.transport.abortConnection()
                self.portal.session_closed(self)
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:
        if self._backlog is None:  # called again on every write while the buffer is full
            self._backlog = 0

    def resumeProducing(self) -> None:
        self._backlog = None

    def stopProducing(self) -> None:
        pass

    def close(self, text: str | None = None) -> None:
        """Say ``text`` and hang up (after what was written has been sent)."""
        if text:
            self.send(text)
        if self._open:
            # A registered producer would keep a closing socket open: unregister first.
            self.transport.transport.unregisterProducer()
            self.transport.loseConnection()

    # -- input -----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        data = data.replace(b"\r", b"\n")  # the parser leaves a lone CR (CR NUL) as "\r"
        while data and self._open:
            head, newline, data = data.partition(b"\n")
            if self._discarding:
                self._discarding = not newline
                continue
            self._buffer += head
            if len(self._buffer) > MAX_LINE:
                line, self._buffer = self._buffer[:MAX_LINE], b""
                self._discarding = not newline
                self.send(f"Your line was too long: only its first {MAX_LINE} bytes were used.")
                self._line(line)
            elif newline:
                line, self._buffer = self._buffer, b""
                self._line(line)

    def _line(self, raw: bytes) -> None:
        line = clean(raw)
        self._refill()
        if not self._queue and self._tokens >= 1:
            self._tokens -= 1
            self.portal.session_input(self, line)
            return
        if len(self._queue) >= QUEUE_MAX:
            if not self._dropped:
                self.send(f"Too much input waiting: lines beyond {QUEUE_MAX} are dropped.")
            self._dropped += 1
        else:
            self._queue.append(line)
        if not self._paused:
            self._paused = True
            self.transport.transport.pauseProducing()
            if not self._throttled:
                self._throttled = True
                self.send(f"You are typing faster than {RATE:.0f} lines a second: "
                          "your input is slowed down.")
                log.info("{session}: input throttled", session=self)
        self._schedule_drain()

    def _refill(self) -> None:
        now = self.portal.reactor.seconds()
        self._tokens = min(float(BURST), self._tokens + (now - self._stamp) * RATE)
        self._stamp = now

    def _schedule_drain(self) -> None:
        if self._drain_call is None or not self._drain_call.active():
            wait = max(0.0, (1 - self._tokens) / RATE)
            self._drain_call = self.portal.reactor.callLater(wait, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        if not self._open:
            return
        self._refill()
        while self._queue and self._tokens >= 1:
            self._tokens -= 1
            self.portal.session_input(self, self._queue.popleft())
        if self._queue:
            self._schedule_drain()
            return
        if self._dropped:
            self.send(f"{self._dropped} line(s) of your input were dropped.")
            log.info("{session}: {n} line(s) dropped", session=self, n=self._dropped)
            self._dropped = 0
        if self._paused:
            self._paused = False
            self.transport.transport.resumeProducing()
