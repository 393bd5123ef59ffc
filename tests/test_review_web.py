"""A hostile review of the web client (issue 14), each test written to fail before its fix.

What an attacker gets from a reader who runs the demo server: the first account made is the
superuser, and the superuser's ``py`` runs any Python. So any page the reader's browser shows
must not be able to play on the server: not through the WebSocket (DNS rebinding gives a page
of another site a Host header that matches its Origin) and not through the telnet port (a web
page can post any text to any port). Then what one client on loopback can do to the others:
hold sockets of the web port open, make the server keep writing what it never reads; and what
a browser sees when the server closes a WebSocket.
"""

from __future__ import annotations

import socket
import struct

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport

from evasync.server import web
from evasync.server.fairness import BYTE_BURST, BYTE_RATE
from evasync.server.game import FREE_FAILURES

from ._server_support import PASSWORD, TIMEOUT, FakePortal, Server, address, wait_for
from ._web_support import BINARY, CLOSE, TEXT, WebSocketClient, frame
from ._web_support import admin, server  # noqa: F401 (the module's fixtures)


def web_port(server: Server) -> int:
    return int(server.web.rstrip("/").rsplit(":", 1)[1])


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(TIMEOUT)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def handshake(server: Server, host: str, origin: str | None = None) -> int:
    """The HTTP status of a WebSocket handshake naming ``host`` (and ``origin``)."""
    sock = socket.create_connection(("127.0.0.1", web_port(server)), timeout=TIMEOUT,
                                    source_address=(address(), 0))
    request = (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n")
    if origin is not None:
        request += f"Origin: {origin}\r\n"
    sock.sendall(request.encode() + b"\r\n")
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    sock.close()
    return int(head.split(b" ", 2)[1]) if head else 0


# -- pages of other sites --------------------------------------------------------------------

def test_a_page_whose_name_was_rebound_to_this_machine_may_not_open_the_websocket(server):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends Host and
    Origin that match each other, both the attacker's. Was: 101, and the page could make the
    first account (the superuser) and run ``py``."""
    port = web_port(server)
    rebound = f"rebind.attacker.example:{port}"
    assert handshake(server, rebound, origin=f"http://{rebound}") == 403
    assert handshake(server, rebound) == 403
    assert handshake(server, f"localhost.attacker.example:{port}") == 403
    for ours in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert handshake(server, ours, origin=f"http://{ours}") == 101, ours
        assert handshake(server, ours) == 101, ours   # a client that is no browser
    assert "refused a request for the host name 'rebind.attacker.example'" in server.log()


def test_the_page_explains_a_host_name_it_does_not_answer_to(server):
    """Was: the page loaded, and its WebSocket was refused with nothing said: the page
    reconnected forever (and a page of another site could read ours)."""
    port = web_port(server)
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                    source_address=(address(), 0))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: rebind.attacker.example:%d\r\n"
                 b"Connection: close\r\n\r\n" % port)
    got = answer(sock).decode("utf-8", "replace")
    sock.close()
    assert got.startswith("HTTP/1.1 403") and "--web-host" in got, got[:300]
    assert "client.js" not in got


@pytest.mark.parametrize("listening, name, ours", [
    ("127.0.0.1", "localhost", True),
    ("127.0.0.1", "app.localhost", True),
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "::1", True),
    ("127.0.0.1", "attacker.example", False),
    ("127.0.0.1", "gamebox", False),                  # loopback: only loopback's names
    ("::1", "localhost", True),
    ("0.0.0.0", "192.168.1.20", True),
    ("0.0.0.0", "gamebox", True),                     # this machine's name
    ("0.0.0.0", "gamebox.lan", True),
    ("0.0.0.0", "attacker.example", False),
    ("game.example.org", "game.example.org", True),   # --web-host names it
    ("game.example.org", "GAME.example.org", True),
    ("game.example.org", "attacker.example", False),
])
def test_the_names_a_websocket_may_be_opened_by(monkeypatch, listening, name, ours):
    monkeypatch.setattr(web, "_machine_names", lambda: frozenset({"gamebox", "gamebox.lan"}))
    assert web.names_us(name, listening) is ours


def test_a_web_page_posting_to_the_telnet_port_is_hung_up_on_before_its_lines_play(server):
    """A cross-protocol attack: ``fetch("http://127.0.0.1:4000/", {method: "POST", body})``
    from any site (Chromium sends it). Was: every line of the body played as a command, the
    first ``create`` making the superuser."""
    body = b"x\r\ncreate Mallory secret-pw\r\npy 6 * 7\r\n"
    request = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
               b"Origin: http://attacker.example\r\nContent-Length: %d\r\n\r\n"
               % (server.port, len(body))) + body
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT,
                                    source_address=(address(), 0))
    sock.sendall(request)
    said = answer(sock).decode("utf-8", "replace")
    sock.close()
    assert "This is the game's telnet port" in said
    assert "Mallory" not in said and "42" not in said
    assert "account Mallory created" not in server.log()
    assert "an HTTP request on the telnet port" in server.log()


def test_a_line_like_an_http_request_later_on_is_just_a_line(server):
    player = server.client("Httpie", PASSWORD)
    player.command("say GET / HTTP/1.1", 'You say, "GET / HTTP/1.1"')
    player.close()


# -- the web port's sockets ------------------------------------------------------------------

def test_the_web_port_holds_a_bounded_number_of_sockets_from_one_address(server, admin):
    """Was: no bound. Sockets that never finish their request (slowloris) took every file
    descriptor the portal had, and no player, telnet or web, could connect."""
    port = web_port(server)
    source = address()

    def connect(src: str) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                        source_address=(src, 0))

    held = []
    for _ in range(web.MAX_SOCKETS):
        sock = connect(source)
        sock.sendall(b"GET / HTTP/1.1\r\n")        # and never the rest
        held.append(sock)

    def page(src: str) -> bytes:
        sock = connect(src)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        except OSError:
            return b""
        got = answer(sock)
        sock.close()
        return got

    # The server answers connects itself (the kernel's backlog), so a refused one is
    # accepted and closed: no answer, however long it waits.
    assert page(source) == b""
    assert page(address()).startswith(b"HTTP/1.1 200")
    admin.command("look", "The Demo Room")
    held.pop().close()
    wait_for(lambda: page(source).startswith(b"HTTP/1.1 200"), what="the freed place")
    for sock in held:
        sock.close()
    assert f"refusing sockets on the web port from {source}" in server.log()


@pytest.mark.parametrize("path", [
    "/../evasync.db", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
    "/webclient/../web.py", "/web.py", "/client.js%00.html", "/CLIENT.JS", "/ws/..%2fweb.py",
])
def test_the_page_serves_its_own_files_and_nothing_else(server, path):
    sock = socket.create_connection(("127.0.0.1", web_port(server)), timeout=TIMEOUT,
                                    source_address=(address(), 0))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                 .encode())
    got = answer(sock)
    sock.close()
    assert got.startswith((b"HTTP/1.1 404", b"HTTP/1.1 426")), (path, got[:200])
    assert b"import" not in got and b"root:" not in got


def test_huge_request_heads_are_refused(server, admin):
    for head in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n",
                 b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
        sock = socket.create_connection(("127.0.0.1", web_port(server)), timeout=TIMEOUT,
                                        source_address=(address(), 0))
        try:
            sock.sendall(head)
        except OSError:
            pass                  # the server hung up while it was being sent
        got = answer(sock)
        sock.close()
        assert got == b"" or got.startswith(b"HTTP/1.1 400"), got[:200]
    admin.command("look", "The Demo Room")


def test_every_way_a_socket_ends_gives_its_place_back(server):
    """Pages, WebSockets quitting, refused or broken off: more of them, one after another,
    than the cap holds at once, and the address is still served."""
    port = web_port(server)
    source = address()
    key = "dGhlIHNhbXBsZSBub25jZQ=="

    def raw(request: bytes, abort: bool = False) -> bytes:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                        source_address=(source, 0))
        sock.sendall(request)
        if abort:   # a reset, not a close
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.recv(1)
            sock.close()
            return b""
        got = answer(sock)
        sock.close()
        return got

    upgrade = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
    for _ in range(web.MAX_SOCKETS // 4 + 1):
        assert raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                   ).startswith(b"HTTP/1.1 200")
        assert raw(f"{upgrade}Origin: http://attacker.example\r\n"
                   f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()).startswith(b"HTTP/1.1 403")
        assert raw(f"{upgrade}\r\n".encode()).startswith(b"HTTP/1.1 400")   # no key
        raw(f"{upgrade}Sec-WebSocket-Key: {key}\r\n\r\n".encode(), abort=True)
        page = WebSocketClient(server.web, source=source)
        page.expect("create <name> <password>")
        page.send_raw(frame(BINARY, b"x"))
        page.wait_closed()
    assert raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
               ).startswith(b"HTTP/1.1 200")


class FakeWebPortal(FakePortal):
    """A portal in virtual time with a game process that is ready, as :func:`web.site` sees it."""

    phase, stopping, reloading, generation = "running", False, False, 1

    def __init__(self, exempt=(), max_connections=1000) -> None:
        super().__init__()
        self.exempt = frozenset(exempt)
        self.max_connections = max_connections
        self.phase_watchers: list = []
        self.web = ("127.0.0.1", 4001)


def http_connect(site, host: str = "10.0.0.1"):
    """A socket (a ``StringTransport``) connected to ``site``, or None if it was refused."""
    peer = IPv4Address("TCP", host, 40000)
    channel = site.buildProtocol(peer)
    if channel is None:
        return None
    sock = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 4001))
    sock.protocol = channel   # as a real socket has it (a WebSocket takes it over)
    channel.makeConnection(sock)
    return sock


def test_an_http_connection_has_a_deadline_however_slowly_it_sends():
    """Was: each byte restarted the idle timer, so one header byte every half minute held a
    socket for days."""
    portal = FakeWebPortal()
    site = web.site(portal)
    sock = http_connect(site)
    sock.protocol.dataReceived(b"GET / HTTP/1.1\r\n")
    waited = 0.0
    while waited < web.HTTP_LIFETIME - web.HTTP_IDLE / 2:
        portal.reactor.advance(web.HTTP_IDLE / 2)
        waited += web.HTTP_IDLE / 2
        sock.protocol.dataReceived(b"X")
        assert not sock.disconnecting
    portal.reactor.advance(web.HTTP_IDLE / 2)
    assert sock.disconnecting
    sock.protocol.connectionLost(Failure(ConnectionDone()))
    assert not site.open                                 # its place is free again


def test_a_websocket_keeps_its_socket_past_the_http_deadline_and_frees_its_place():
    portal = FakeWebPortal()
    site = web.site(portal)
    sock = http_connect(site)
    channel = sock.protocol
    channel.dataReceived(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:4001\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n")
    wire = sock.protocol
    assert wire is not channel and wire.session is not None, sock.value()
    portal.reactor.advance(web.HTTP_LIFETIME * 2)
    assert not sock.disconnecting
    assert site.open == {"10.0.0.1": 1}
    wire.connectionLost(Failure(ConnectionDone()))
    assert not site.open


def test_an_exempt_address_is_not_held_to_the_socket_cap():
    portal = FakeWebPortal(exempt=["10.0.0.9"])
    site = web.site(portal)
    capped = [http_connect(site, "10.0.0.1") for _ in range(web.MAX_SOCKETS + 1)]
    assert capped[-1] is None and all(capped[:-1])
    assert all(http_connect(site, "10.0.0.9") for _ in range(web.MAX_SOCKETS + 1))


# -- closing a WebSocket ---------------------------------------------------------------------

def web_connect(portal: FakePortal, host: str = "10.0.0.1"):
    """A page's WebSocket to this portal on a ``StringTransport``: (wire, socket)."""
    peer = IPv4Address("TCP", host, 40000)
    wire = web._WireFactory(portal).buildProtocol(peer)
    sock = StringTransport(peerAddress=peer)
    sock.registerProducer(StringTransport(), True)   # as twisted.web's HTTP channel does
    wire.makeConnection(sock)
    wire.dataReceived(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert wire.session is not None, sock.value()
    sock.clear()
    return wire, sock


@pytest.mark.parametrize("close", [
    lambda session: session.close(),                        # the player quit
    lambda session: session.close("You did not log in."),   # hung up on
])
def test_the_pages_answer_to_the_servers_close_ends_the_connection(close):
    """Was: the page's close frame was never read (its input was closed first), so every quit
    ended with the server waiting out its closing timeout, then resetting the socket; Chromium
    waited two seconds before telling the player they had left."""
    portal = FakeWebPortal()
    wire, sock = web_connect(portal)
    close(wire.session)
    assert wire.state == wire.STATE_CLOSING
    wire.dataReceived(frame(CLOSE, struct.pack("!H", 1000)))
    portal.turns(3)
    assert sock.disconnecting and wire.wasClean


def test_lines_after_a_refused_binary_message_are_not_played():
    """Was: the binary message closed the connection, and the lines after it were played."""
    portal = FakeWebPortal()
    wire, _ = web_connect(portal)
    wire.dataReceived(frame(BINARY, b"\x00\x01") + frame(TEXT, b"say after the refusal"))
    portal.turns(5)
    assert portal.lines == []


def test_a_message_in_too_many_frames_is_refused_and_not_kept():
    """Was: empty fragments, which add nothing to a message's size, were each kept (a list
    entry per 6 bytes received) as long as the message went on: without end for a player
    logged in."""
    portal = FakeWebPortal()
    wire, sock = web_connect(portal)
    wire.dataReceived(frame(TEXT, b"", fin=False) +
                      frame(0x0, b"", fin=False) * (web.MAX_FRAMES - 1))
    portal.turns(5)
    assert wire.state == wire.STATE_OPEN       # as many frames as a message may have
    wire.dataReceived(frame(0x0, b"", fin=False) * 10_000)
    portal.turns(50)
    assert wire.state == wire.STATE_CLOSING
    assert struct.pack("!H", web.REFUSED) + b"send a message in" in sock.value()
    assert len(wire.message_data) <= web.MAX_FRAMES
    wire.dataReceived(frame(0x0, b"say refused", fin=True))
    portal.turns(5)
    assert portal.lines == []


def test_a_message_in_a_few_frames_is_a_message():
    portal = FakeWebPortal()
    wire, _ = web_connect(portal)
    wire.dataReceived(frame(TEXT, b"say ", fin=False) + frame(0x0, b"", fin=False) * 100 +
                      frame(0x0, b"in pieces"))
    portal.turns(5)
    assert portal.lines == [(wire.session.sid, "say in pieces")]


def test_no_line_is_played_after_a_quit():
    portal = FakeWebPortal()
    wire, _ = web_connect(portal)
    wire.session.close()
    wire.dataReceived(frame(TEXT, b"say after quitting"))
    portal.turns(5)
    assert portal.lines == []


# -- a client that does not read -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["telnet", "web"])
def test_a_client_that_does_not_read_what_it_is_sent_is_not_read_either(kind):
    """Was: its input kept being read, and what it asked for piled up unsent: a telnet client
    sending ``IAC DO`` for options we refuse (each answered) and never reading grew the
    portal by 25 MB in 90 s."""
    portal = FakeWebPortal()
    if kind == "telnet":
        wire, sock = portal.connect()
        session = wire.protocol
    else:
        wire, sock = web_connect(portal)
        session = wire.session
    session.pauseProducing()             # what the socket calls once its send buffer is full
    assert sock.producerState == "paused"
    session.resumeProducing()
    assert sock.producerState == "producing"
    # It composes with the other reasons to hold the reading: each must be gone.
    session.input.received(b"x" * (BYTE_BURST + 1))
    assert sock.producerState == "paused"
    session.pauseProducing()
    session.resumeProducing()
    assert sock.producerState == "paused"


# -- what the WebSocket's address answers ----------------------------------------------------

def test_the_websocket_address_is_no_open_redirect_and_names_no_versions(server):
    """Was: autobahn's status page, ``/ws?redirect=URL`` sending the browser anywhere (303),
    and its version in every answer."""
    sock = socket.create_connection(("127.0.0.1", web_port(server)), timeout=TIMEOUT,
                                    source_address=(address(), 0))
    sock.sendall(b"GET /ws?redirect=https%3A%2F%2Fattacker.example%2F HTTP/1.1\r\n"
                 b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
    got = answer(sock)
    sock.close()
    assert got.startswith(b"HTTP/1.1 4"), got[:200]
    assert b"attacker.example" not in got and b"Autobahn" not in got
    player = WebSocketClient(server.web, source=address())
    assert player.status == 101
    player.close()


# -- what a page's frames cost ---------------------------------------------------------------

def test_tiny_frames_are_charged_as_the_work_they_cost():
    """Was: only their bytes counted. An empty ping is 6 bytes and some 10 us of Python in
    autobahn's parser (a telnet client's junk costs about 2 ns a byte), so ten pages sending
    empty pings at the byte rate took 72% of the portal and a telnet player's round trip
    went from 1.6 ms to 75 ms (median)."""
    from ._web_support import PING

    portal = FakeWebPortal()
    wire, sock = web_connect(portal)
    frames = BYTE_BURST // web.FRAME_COST + 100
    pings = frame(PING, b"") * frames
    assert len(pings) < BYTE_BURST // 10          # their bytes alone are far from the burst
    wire.dataReceived(pings)
    portal.turns(len(pings) // web.WEB_SLICE + 2)
    assert sock.producerState == "paused"         # the rest waits for the byte rate
    portal.advance(frames * web.FRAME_COST / BYTE_RATE)
    assert sock.producerState == "producing"


# -- limits shared with telnet ---------------------------------------------------------------

def test_failed_logins_count_per_address_whether_telnet_or_web(server):
    source = address()
    telnet = server.client(source=source)
    for attempt in range(FREE_FAILURES):   # a name each: only the address's count adds up
        telnet.command(f"connect Guess{attempt} wrong-pw", "Wrong name or password")
    page = WebSocketClient(server.web, source=source)
    page.expect("create <name> <password>")
    page.command("connect Guessnext wrong-pw", r"Too many failed logins: wait \d+ s")
    telnet.close()
    page.close()
