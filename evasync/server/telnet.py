"""A player's telnet connection, on the portal: bytes in, clean lines out; text in, bytes out.

Option negotiation is ``twisted.conch.telnet``'s: the server offers SGA (no go-aheads) and asks
for NAWS (window size); a client may turn on BINARY either way; everything else is refused.
Text is UTF-8 both ways.

Input is made safe before it goes anywhere: it is parsed in the connection's fair share of the
portal's time, with a line rate and a byte rate per connection (see :mod:`.fairness`); control
characters and invalid UTF-8 are dropped and a line longer than
:data:`~evasync.server.fairness.MAX_LINE` bytes is cut (the player is told). What a telnet
connection shares with a web page (the login timeout, hanging up on a player who stops reading)
is in :class:`~evasync.server.session.Session`.

A connection whose first line is an HTTP request line is hung up on before it plays: a web page
can post any text to any port, and the lines of its body must not be played (the first account
made is the superuser, whose ``py`` runs any Python).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from twisted.conch import telnet
from twisted.logger import Logger, LogLevel

from .fairness import LineInput
from .session import Session

if TYPE_CHECKING:
    from .portal import Portal

log = Logger(namespace="evasync.server.telnet")

SB_MAX = 512            # bytes in a subnegotiation (a window size takes 4); longer: dropped

BINARY = b"\x00"  # RFC 856 (conch names no constant for it)
NAWS = telnet.NAWS
_WANTED_LOCAL = {telnet.SGA, BINARY}   # we will, if asked
_WANTED_REMOTE = {NAWS, BINARY, telnet.SGA}  # the client may

#: Bytes a run of two-byte telnet commands (NOP, GA, AYT ...: nothing we act on) is made of.
_RUN = re.compile(rb"[\xef-\xf9\xff]+")
_SUBNEGOTIATION = re.compile(rb"\xff\xfa((?:[^\xff]|\xff\xff){0,%d})\xff\xf0" % SB_MAX)
_IAC, _SB, _WILL = 0xFF, 0xFA, 0xFB
#: The first line of an HTTP request (a method, a target, the version), as a browser sends it.
_HTTP_REQUEST = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d(\.\d)?")


class TelnetTransport(telnet.TelnetTransport):
    """conch's telnet option negotiation, under a parser that does no Python work per byte.

    Bytes from the socket go to the session's :class:`~evasync.server.fairness.LineInput`,
    which calls :meth:`decode` in the connection's turn. Runs of ordinary text and runs of
    two-byte commands are each handled in one step of C code (``bytes.find``, a regular
    expression); only option negotiations and subnegotiations reach conch, one Python call each.
    A stray or unknown command after IAC is dropped instead of ending the connection.
    """

    _tail = b""          # an incomplete command at the end of the last chunk
    _after_cr = False    # the last chunk ended with CR: a LF or NUL next belongs to it
    _skipping = False    # inside an over-long subnegotiation, dropped up to its IAC SE

    def dataReceived(self, data: bytes) -> None:
        self.protocol.input.received(data)

    def decode(self, data: bytes) -> bytes:
        """The text in ``data`` (CR LF, CR NUL and CR made ``\\n``), acting on its commands."""
        if self._tail:
            data, self._tail = self._tail + data, b""
        if self._skipping:
            end = data.find(b"\xff\xf0")
            if end == -1:
                self._tail = b"\xff" if data.endswith(b"\xff") else b""
                return b""
            data = data[end + 2:]
            self._skipping = False
        if b"\xff" not in data:
            return self._newlines(data)
        text = []
        pos, size = 0, len(data)
        while pos < size:
            iac = data.find(b"\xff", pos)
            if iac == -1:
                text.append(data[pos:])
                break
            if iac > pos:
                text.append(data[pos:iac])
            if iac + 1 == size:
                self._tail = b"\xff"
                break
            command = data[iac + 1]
            if _WILL <= command < _IAC:  # WILL, WONT, DO, DONT and an option
                if iac + 2 == size:
                    self._tail = data[iac:]
                    break
                self._command(data[iac + 1:iac + 2], data[iac + 2:iac + 3])
                pos = iac + 3
            elif command == _SB:
                found = _SUBNEGOTIATION.match(data, iac)
                if found:
                    self._subnegotiation(found.group(1))
                    pos = found.end()
                    continue
                end = data.find(b"\xff\xf0", iac + 2)
                if end != -1:   # malformed or too long: dropped
                    pos = end + 2
                elif size - iac > SB_MAX + 4:
                    self._skipping = True
                    self._tail = b"\xff" if data.endswith(b"\xff") else b""
                    break
                else:
                    self._tail = data[iac:]
                    break
            elif command >= 0xEF:
                # A run of IAC + one byte: NOP, GA, AYT ... (ignored, as conch does by default)
                # and escaped 255s (never text in UTF-8: session.clean() would drop them anyway).
                run = _RUN.match(data, iac).group()
                starts = run[::2]
                pairs = len(starts) - len(starts.lstrip(b"\xff"))
                pos = iac + 2 * min(pairs, len(run) // 2)
            else:  # IAC and a byte that is no telnet command: both dropped
                pos = iac + 2
        return self._newlines(b"".join(text))

    def _newlines(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._after_cr and data[0] in (10, 0):
            data = data[1:]
        self._after_cr = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\n").replace(b"\r", b"\n")
        return data

    def _command(self, command: bytes, option: bytes) -> None:
        try:
            self.commandReceived(command, option)
        except Exception:  # a confused negotiation must not cost the player the connection
            log.failure("telnet negotiation from {peer}", peer=self.getPeer(),
                        level=LogLevel.error)

    def _subnegotiation(self, payload: bytes) -> None:
        payload = payload.replace(b"\xff\xff", b"\xff")
        if not payload:
            return
        try:
            self.negotiate([payload[i:i + 1] for i in range(len(payload))])
        except Exception:
            log.failure("telnet subnegotiation from {peer}", peer=self.getPeer(),
                        level=LogLevel.error)


class TelnetSession(Session, telnet.TelnetProtocol):
    """One player's telnet connection (see :class:`~evasync.server.session.Session`).

    Attributes:
        width: The client's window width, if it told us (NAWS), else 80.
    """

    def __init__(self, portal: "Portal") -> None:
        super().__init__(portal)
        self.width = 80
        self._first_line = True

    # -- connection ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._peer(self.transport.getPeer())
        socket = self.transport.transport
        self.input = LineInput(self.portal.budget, self.portal.reactor, socket, self._line,
                               self.send, decode=self.transport.decode, owner=self)
        self.transport.negotiationMap[NAWS] = self._window_size
        for offer in (self.transport.will(telnet.SGA), self.transport.do(NAWS)):
            offer.addErrback(lambda failure: None)  # refused, or the client left: both fine
        # The socket tells us (pauseProducing) when its send buffer is full: the player is
        # not reading what we write.
        socket.registerProducer(self, True)
        self._opened()

    def connectionLost(self, reason: Any = None) -> None:
        self._lost()

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
        if not self.overflowed(data):
            self.transport.write(data)

    def abort(self) -> None:
        self.transport.transport.abortConnection()

    def close(self, text: str | None = None) -> None:
        """Say ``text`` and hang up (after what was written has been sent)."""
        if text:
            self.send(text)
        if self._open:
            # A registered producer would keep a closing socket open: unregister first.
            self.transport.transport.unregisterProducer()
            self.transport.loseConnection()
        if self.input is not None:
            self.input.close()

    # -- input -----------------------------------------------------------------------------

    def _line(self, raw: bytes) -> None:
        if self._first_line:
            self._first_line = False
            if _HTTP_REQUEST.fullmatch(raw):
                log.warn("{session}: an HTTP request on the telnet port (a web page posting "
                         "to it?); hanging up", session=self)
                self.close("This is the game's telnet port: play with a telnet or MUD client, "
                           "or with the web client in a browser.")
                return
        self._take_line(raw)
