"""The web client: a page and a WebSocket on the portal, for players without a telnet client.

:func:`site` makes the ``twisted.web`` site the portal listens with (``--web-port``, 4001 by
default). It serves:

* ``/``: the page, its script and its style sheet, plain files in ``webclient/`` beside this
  module (no build step);
* ``/ws``: the WebSocket (autobahn) the page plays on. Each connection is a :class:`WebSession`,
  which the portal treats as it treats a telnet connection: same accounts, commands and limits,
  and it stays connected through a reload.

What goes over the WebSocket:

* page to server: text messages, each one input line (a message holding several lines, a paste,
  is several lines). Never parsed as anything but text. A binary message closes the connection,
  so do a message over :data:`MAX_MESSAGE` bytes or in over :data:`MAX_FRAMES` frames, and
  invalid UTF-8. The input meets the telnet limits, in the same fair turns (a
  :class:`~evasync.server.fairness.LineInput` on the portal's budget, which calls autobahn's
  frame parser a slice at a time): raw bytes (each frame counting :data:`FRAME_COST` more) and
  lines a second, lines cut at :data:`~evasync.server.fairness.MAX_LINE` bytes, control
  characters dropped; a page that does not log in is closed after
  :data:`~evasync.server.session.LOGIN_IDLE` seconds without a line, and the portal's cap on
  connections per address counts pages too. A page that does not read what it is sent is not
  read either, until it does.
* server to page: JSON text messages, one object each: ``{"text": ...}`` output, with its line
  endings (a message may end mid-line); ``{"game": state, "notice": ...}`` the game process's
  state (``ready``, ``starting``, ``reloading``, ``restarting`` or ``stopping``) and what to tell
  the player while it is not ready; ``{"player": name}`` the character logged in on the
  connection ("" for none).

Who may open the WebSocket: the first account made is the superuser, whose ``py`` runs any
Python, so no page of another site may play from the reader's browser. Every request must name
the server by an IP address, ``localhost``, or (when it listens beyond loopback) by the name it
listens on or this machine's name: any other name is a name whose DNS someone else answers, who
could make it resolve to this machine (DNS rebinding); it is refused (403) with the way out. A
browser's ``Origin`` must then be the page's own address.

The web port holds at most :data:`MAX_SOCKETS` sockets from one address (``--exempt-address``
excepted) and twice ``--max-connections`` from all together (a page each, and as many again for
page loads: a browser keeps the socket it loaded the page on open while it opens the
WebSocket), and a socket still speaking HTTP is closed :data:`HTTP_LIFETIME` seconds after it
opened, however busy.

The server closes the WebSocket with code 1000 when the player quits, :data:`STOPPING` when the
server stops (the page reconnects, once the server is back), :data:`REFUSED` when the page sent
a binary message and :data:`HUNG_UP` when the player was hung up on (the page does not
reconnect after those). autobahn sends the standard codes for a broken protocol: 1007 (invalid
UTF-8), 1009 (a message too big), 1002.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (ConnectionDeny, WebSocketServerFactory,
                                        WebSocketServerProtocol)
from twisted.logger import Logger
from twisted.web import http, resource, server

from .fairness import LineInput
from .limits import Episodes
from .session import Session

if TYPE_CHECKING:
    from .portal import Portal

log = Logger(namespace="evasync.server.web")

#: The page's files, served as they are.
CLIENT = Path(__file__).resolve().parent / "webclient"
ASSETS = {b"": ("index.html", "text/html"), b"client.js": ("client.js", "text/javascript"),
          b"client.css": ("client.css", "text/css"),
          b"favicon.svg": ("favicon.svg", "image/svg+xml")}
#: Bytes in one WebSocket message (or frame) from the page: several lines of a paste.
MAX_MESSAGE = 16_384
#: Bytes each frame from the page counts for in the byte rate, beyond its own: autobahn parses
#: a frame in Python (some 10 us), so tiny frames (empty pings) cost a thousand times more per
#: byte than a telnet client's junk. With it, a page may send 256 frames a second, sustained.
FRAME_COST = 128
#: Raw bytes of a page's input parsed at a time (the budget's slice is for cheaper bytes): a
#: slice of empty frames stays well under a millisecond.
WEB_SLICE = 256
#: Frames in one message from the page (a browser sends a message as one frame). Empty
#: fragments add nothing to a message's size: without a cap, each one would be kept.
MAX_FRAMES = 256
#: Bytes of body an HTTP request may carry (the page sends none).
MAX_BODY = 4096
#: Seconds an HTTP connection may stay idle before it is closed (not the WebSocket's).
HTTP_IDLE = 30
#: Seconds an HTTP connection may stay open in all, however busy: a client sending its request
#: a byte at a time (slowloris) resets the idle timer with each. Not a WebSocket's.
HTTP_LIFETIME = 60
#: Sockets open at once on the web port from one address: the portal's cap on players
#: (``MAX_PER_ADDRESS``, pages included) with as many again for a browser's page loads.
MAX_SOCKETS = 32
#: Seconds between pings on a quiet WebSocket; a page that does not answer one in as many
#: seconds is gone (a phone gone to sleep, a pulled cable) and its connection is closed.
PING_EVERY = 30

#: Only the page's own scripts, styles and WebSocket: player text can never become markup, and
#: even if it did, nothing from elsewhere would run.
SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                b"img-src 'self'; connect-src 'self'; base-uri 'none'; "
                                b"form-action 'none'; frame-ancestors 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}

NOTICES = {
    "ready": "",
    "starting": "The game is starting; hold on ...",
    "reloading": "The game is reloading; you stay connected.",
    "restarting": "The game stopped unexpectedly and is being restarted; you stay connected.",
    "stopping": "The server is shutting down.",
}

#: Close codes (those an application may send are 1000 and 3000 to 4999).
QUIT, STOPPING, REFUSED, HUNG_UP = 1000, 4001, 4003, 4008


def game_state(portal: "Portal") -> str:
    """What the page says about the game process: a key of :data:`NOTICES`."""
    if portal.phase == "running":
        return "ready"
    if portal.stopping:
        return "stopping"
    if portal.reloading:
        return "reloading"
    return "starting" if portal.generation == 0 else "restarting"


def names_us(name: str, listening: str) -> bool:
    """Whether a request whose Host header names ``name`` is for this server, the web client
    listening on the address ``listening``.

    An IP address and ``localhost`` (and its subdomains, which browsers resolve themselves)
    always are; beyond loopback, so are ``listening`` and this machine's names. Any other name
    is refused: someone else answers its DNS, and may have made it resolve to this machine
    (DNS rebinding) so that their page, which the browser holds for theirs, reaches the game.
    """
    name = name.lower()
    if _address(name) is not None or name == "localhost" or name.endswith(".localhost"):
        return True
    listening = listening.lower()
    ip = _address(listening)
    if listening == "localhost" or (ip is not None and ip.is_loopback):
        return False
    return name == listening or name in _machine_names()


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _machine_names() -> frozenset[str]:
    return frozenset(name.lower() for name in (socket.gethostname(), socket.getfqdn()))


def _host_name(header: str) -> str:
    """The name in a Host header, without its port ("" if there is none)."""
    try:
        return urlsplit(f"//{header}").hostname or ""
    except ValueError:  # a malformed IPv6 address
        return ""


def site(portal: "Portal") -> server.Site:
    """The page and its WebSocket, as a site for the portal to listen with."""
    factory = _WireFactory(portal)
    root = resource.Resource()
    for name, (filename, kind) in ASSETS.items():
        root.putChild(name, _Asset(CLIENT / filename, kind))
    root.putChild(b"ws", WebSocketResource(factory))
    portal.phase_watchers.append(lambda: _announce(portal))
    # Room for page loads beyond the players, as MAX_SOCKETS has beyond MAX_PER_ADDRESS: with
    # only as many sockets as players, a browser's page load (kept alive) would take the place
    # of its own WebSocket, and a browser could not be told that the server is full.
    web = _Site(root, portal.web[0] if portal.web else "127.0.0.1", portal.exempt,
                portal.reactor, 2 * portal.max_connections)
    factory.site = web
    return web


def _announce(portal: "Portal") -> None:
    for session in list(portal.sessions.values()):
        if isinstance(session, WebSession):
            session.show_state()


class _Site(server.Site):
    """The web port, listening on the address ``listening``: requests for other host names are
    refused (see :func:`names_us`); at most :data:`MAX_SOCKETS` sockets open from one address
    (addresses in ``exempt`` excepted) and ``max_sockets`` from all together, counted from
    accept to close, whether HTTP or WebSocket.

    Attributes:
        open: The sockets open, by address.
        total: The sockets open.
    """

    noisy = False

    def __init__(self, root: resource.Resource, listening: str, exempt: frozenset[str],
                 reactor: Any, max_sockets: int) -> None:
        super().__init__(root, requestFactory=_Request, timeout=HTTP_IDLE, reactor=reactor)
        self.protocol = _Channel
        self.listening = listening
        self.exempt = exempt
        self.max_sockets = max_sockets
        self.open: Counter[str] = Counter()
        self.total = 0
        self._refusing: set[str] = set()
        self._full = Episodes(reactor)  # refusals for max_sockets

    def buildProtocol(self, addr: Any) -> Any:
        host = str(getattr(addr, "host", "?"))
        if self.open[host] >= MAX_SOCKETS and host not in self.exempt:
            if host not in self._refusing:  # logged once per episode, not once per socket
                self._refusing.add(host)
                log.warn("refusing sockets on the web port from {host}: {n} already open",
                         host=host, n=MAX_SOCKETS)
            return None  # Twisted closes the socket at once
        if self.total >= self.max_sockets:
            if self._full.refused():
                log.warn("refusing sockets on the web port: {n} are open, the most "
                         "--max-connections allows (twice the players)", n=self.max_sockets)
            return None
        self.open[host] += 1
        self.total += 1
        channel = super().buildProtocol(addr)
        channel.host = host
        return channel

    def getResourceFor(self, request: server.Request) -> resource.IResource:
        name = _host_name((request.getHeader(b"host") or b"").decode("latin-1"))
        if not names_us(name, self.listening):
            log.warn("refused a request for the host name {name!r}: not a name of this server "
                     "(a page of another site, its name made to resolve here?). To play by "
                     "that name, start the server with --web-host {name}", name=name)
            return resource.ErrorPage(
                403, "Not this server's name",
                "Open the game's page by the address the server gave (evasync status shows "
                "it), or start the server with --web-host and the name you use.")
        return super().getResourceFor(request)

    def release(self, host: str) -> None:
        """A socket from ``host`` has closed."""
        self.total -= 1
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]
            self._refusing.discard(host)

    def log(self, request: Any) -> None:
        """No access log: every page load would be a line in the game's log."""


class _Channel(http.HTTPChannel):
    """A socket of the web port while it speaks HTTP: closed :data:`HTTP_LIFETIME` seconds
    after it opened, unless it has become a WebSocket, which has timeouts of its own."""

    site: _Site
    host = ""
    _deadline: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = self.callLater(HTTP_LIFETIME, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is not None:  # None: handed over to a WebSocket (which releases it)
            self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        super().connectionLost(reason)
        self.site.release(self.host)


class _Request(server.Request):
    """A request whose body, which the page never sends, is cut off at :data:`MAX_BODY`."""

    _body = 0

    def handleContentChunk(self, data: bytes) -> None:
        self._body += len(data)
        if self._body > MAX_BODY:
            self.channel.transport.abortConnection()
            return
        super().handleContentChunk(data)


class _Asset(resource.Resource):
    """One of the page's files, read from disk on each request (it is small)."""

    isLeaf = True

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__()
        self.path = path
        self.kind = kind

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", f"{self.kind}; charset=utf-8".encode())
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return self.path.read_bytes()

    def render_HEAD(self, request: server.Request) -> bytes:
        return self.render_GET(request)


class _WireFactory(WebSocketServerFactory):
    def __init__(self, portal: "Portal") -> None:
        # server=None: no "Server: AutobahnPython/<version>" header in the handshake's answer.
        super().__init__(reactor=portal.reactor, server=None)
        self.portal = portal
        #: The web port's site, told when a WebSocket's socket closes (None in some tests).
        self.site: _Site | None = None
        self.protocol = _Wire
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_MESSAGE, maxMessagePayloadSize=MAX_MESSAGE,
            openHandshakeTimeout=10, closeHandshakeTimeout=5,
            failByDrop=False,  # a broken protocol is told why (a close frame), then dropped
            autoPingInterval=PING_EVERY, autoPingTimeout=PING_EVERY,
            # Not autobahn's status page: it names autobahn's version, and its ?redirect=URL
            # would send a browser from our address to any other (an open redirect).
            webStatus=False)
        self.noisy = False


class _Wire(WebSocketServerProtocol):
    """The WebSocket of one page: frames in and out (autobahn's), for its :class:`WebSession`.

    Once the WebSocket is open, the bytes from the socket go to the session's input, which
    hands them back to :meth:`frames` in the connection's turns: autobahn parses them then.
    """

    factory: _WireFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: WebSession | None = None
        self.host = ""
        self._texts: list[bytes] = []  # messages parsed, not yet taken by frames()
        self._frames = 0               # frames of the message being received
        self._parsed = 0               # frames parsed by the current call of frames()

    def connectionMade(self) -> None:
        self.host = str(getattr(self.transport.getPeer(), "host", "?"))
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if self.factory.site is not None:
            self.factory.site.release(self.host)

    def dataReceived(self, data: bytes) -> None:
        if self.session is None or self.session.input is None:  # the opening handshake
            super().dataReceived(data)
        else:
            self.session.input.received(data)

    def frames(self, data: bytes) -> bytes:
        """The text messages that ``data`` completes, each ended with ``\n``; every frame in
        it is charged :data:`FRAME_COST` to the session's byte rate."""
        if data:
            self._parsed = 0
            super().dataReceived(data)
            if self._parsed and self.session is not None and self.session.input is not None:
                self.session.input.charge(self._parsed * FRAME_COST)
        texts, self._texts = self._texts, []
        return b"".join(text + b"\n" for text in texts)

    def onConnect(self, request: Any) -> None:
        # The host name was checked by the site (_Site.getResourceFor).
        origin = request.headers.get("origin")
        # A page from another site must not play (or make accounts) with the reader's browser.
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            log.info("refused a WebSocket from a page of {origin}", origin=origin)
            raise ConnectionDeny(403, "the game is played from its own page only")

    def onOpen(self) -> None:
        self.session = WebSession(self.factory.portal, self)
        self.session.opened()

    def onFrameBegin(self) -> None:
        self._parsed += 1
        super().onFrameBegin()

    def onMessageBegin(self, isBinary: bool) -> None:
        self._frames = 0
        super().onMessageBegin(isBinary)

    def onMessageFrameBegin(self, length: int) -> None:
        self._frames += 1
        if self._frames == MAX_FRAMES + 1 and self.session is not None:
            self.session.close_wire(REFUSED, f"send a message in {MAX_FRAMES} frames at most")
        super().onMessageFrameBegin(length)

    def onMessageFrameData(self, payload: bytes) -> None:
        if self._frames <= MAX_FRAMES:  # beyond: refused, and nothing more is kept
            super().onMessageFrameData(payload)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None or self.session.closing:
            return
        if isBinary:
            self.session.close_wire(REFUSED, "send text messages, not binary ones")
            return
        self._texts.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.session is not None:
            self.session.lost()


class WebSession(Session):
    """One player's page (see :class:`~evasync.server.session.Session`). The portal knows it by
    ``sid``, as it knows a telnet connection.

    Attributes:
        wire: The page's WebSocket connection.
        closing: True once the server has closed the WebSocket: the page's lines are dropped,
            its frames still read (its answer to the close frame ends the connection).
    """

    def __init__(self, portal: "Portal", wire: _Wire) -> None:
        super().__init__(portal)
        self.wire = wire
        self.closing = False
        self._shown_state: str | None = None

    # -- connection ------------------------------------------------------------------------

    def opened(self) -> None:
        self._peer(self.wire.transport.getPeer())
        socket = self.wire.transport
        self.input = LineInput(self.portal.budget, self.portal.reactor, socket, self._line,
                               self.send, decode=self.wire.frames, owner=self, slice=WEB_SLICE)
        # twisted.web registered its HTTP channel as the socket's producer; the channel is done
        # with this socket, and the session wants to hear when the player stops reading.
        socket.unregisterProducer()
        socket.registerProducer(self, True)
        self._open = True  # show_state() writes only to an open session
        self.show_state()
        self._opened()

    def lost(self) -> None:
        self._lost()

    def logged_in(self, character_id: int | None, name: str) -> None:
        """The game logged a character in on this connection (None: logged out)."""
        super().logged_in(character_id, name)
        self._write({"player": name})

    # -- output ----------------------------------------------------------------------------

    def send(self, text: str, end: str = "\n") -> None:
        """Show ``text`` to the player (``end`` ends it: "" continues the line)."""
        self._write({"text": text.replace("\r\n", "\n") + end})

    def show_state(self) -> None:
        """Tell the page the game process's state, if it changed."""
        state = game_state(self.portal)
        if state != self._shown_state:
            self._shown_state = state
            self._write({"game": state, "notice": NOTICES[state]})
        if state == "stopping":
            # Now, not when the portal closes the connections: by then the reactor stops
            # before it has sent the close frame, and the page could not tell why.
            self.close_wire(STOPPING, "the server is shutting down")

    def _write(self, message: dict) -> None:
        if not self._open or self.wire.state != WebSocketServerProtocol.STATE_OPEN:
            return
        # "replace": a lone surrogate (from a file name that is not UTF-8) must not cost the
        # player the message, nor make invalid UTF-8, which would end the page's connection.
        data = json.dumps(message, ensure_ascii=False).encode("utf-8", "replace")
        if not self.overflowed(data):
            self.wire.sendMessage(data)

    def abort(self) -> None:
        self.wire.dropConnection(abort=True)

    def close(self, text: str | None = None) -> None:
        """Say ``text`` and hang up (after what was written has been sent).

        With a ``text`` the player is hung up on (refused, idle) and the page does not
        reconnect; without, the player quit, or the server stops.
        """
        if text:
            self.send(text)
            self.close_wire(HUNG_UP, text)
        elif self.portal.stopping:
            self.close_wire(STOPPING, "the server is shutting down")
        else:
            self.close_wire(QUIT, "goodbye")

    def close_wire(self, code: int, reason: str) -> None:
        """End the WebSocket with ``code`` and ``reason`` (the page shows the reason); lines
        from the page are dropped from now on."""
        self.closing = True
        if self._open and self.wire.state == WebSocketServerProtocol.STATE_OPEN:
            # A close frame's reason holds 123 bytes at most.
            self.wire.sendClose(code, reason.encode()[:123].decode("utf-8", "ignore"))

    # -- input -----------------------------------------------------------------------------

    def _line(self, raw: bytes) -> None:
        if not self.closing:
            self._take_line(raw)
