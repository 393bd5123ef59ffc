"""The web client's server side, with real sockets: the page over HTTP, players on WebSockets.

One server (``--speed 10``, any free ports) serves the module. The WebSocket clients here are
:class:`~tests._web_support.WebSocketClient`: they speak the protocol frame by frame, so they
can also send what no browser would. Whatever they send, the answer is a clear close or a
dropped message, and a telnet player meanwhile is answered.
"""

from __future__ import annotations

import http.client
import itertools
import re
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from evasync.server.fairness import MAX_LINE, TURN
from evasync.server.portal import MAX_PER_ADDRESS
from evasync.server.rundir import RunDir
from evasync.server.session import LOGIN_IDLE
from evasync.server.web import (CLIENT, HUNG_UP, MAX_MESSAGE, REFUSED, STOPPING, WEB_SLICE,
                                 _WireFactory)

from ._server_support import (PASSWORD, TIMEOUT, Client, FakePortal, Server, address, evasync,
                              flood_until_hung_up, wait_for)
from ._web_support import BINARY, CLOSE, PING, TEXT, WebSocketClient, frame
from ._web_support import admin, server  # noqa: F401 (the module's fixtures)


@pytest.fixture
def web(server, admin):
    """Makes WebSocket clients on the server's web client (closed after the test)."""
    made = []

    def make(name: str | None = None, banner: bool = True, **kwargs) -> WebSocketClient:
        kwargs.setdefault("source", address())
        client = WebSocketClient(server.web, **kwargs)
        made.append(client)
        if client.status == 101 and banner:
            client.expect("create <name> <password>")
            if name is not None:
                client.login(name, PASSWORD)
        return client

    yield make
    for client in made:
        client.close()


def get(server: Server, path: str, method: str = "GET") -> http.client.HTTPResponse:
    address = urlsplit(server.web)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.request(method, path)
    return connection.getresponse()


# -- a page's input, in virtual time ---------------------------------------------------------

class FakeWebPortal(FakePortal):
    """A portal in virtual time with a game process that is ready."""

    phase, stopping, reloading, generation = "running", False, False, 1


def web_connect(portal: FakeWebPortal, host: str = "10.0.0.1"):
    """A page's WebSocket to this portal on a ``StringTransport``: (wire, socket)."""
    peer = IPv4Address("TCP", host, 40000)
    wire = _WireFactory(portal).buildProtocol(peer)
    sock = StringTransport(peerAddress=peer)
    sock.registerProducer(StringTransport(), True)   # as twisted.web's HTTP channel does
    wire.makeConnection(sock)
    wire.dataReceived(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert wire.session is not None, sock.value()
    sock.clear()
    return wire, sock


def test_a_pages_input_waits_for_its_turn_and_is_parsed_a_slice_at_a_time():
    portal = FakeWebPortal()
    wire, _ = web_connect(portal)
    pings = frame(PING, b"") * 20_000                 # 120 kB that make no line
    wire.dataReceived(pings + frame(TEXT, b"look"))
    assert wire.session.input.pending >= len(pings) - WEB_SLICE   # one slice at most, on arrival
    portal.turns(len(pings) // WEB_SLICE + 1)
    assert portal.lines == [(wire.session.sid, "look")]


def test_a_quiet_page_waits_behind_one_slice_of_each_flooding_page_at_most():
    readings = itertools.count()
    portal = FakeWebPortal(timer=lambda: next(readings) / 1000)  # a slice "takes" 1 ms
    flooders = [web_connect(portal, f"10.0.1.{i}")[0] for i in range(20)]
    for wire in flooders:
        wire.dataReceived(frame(PING, b"") * 10_000)
    calm = web_connect(portal, "10.0.2.1")[0]
    calm.dataReceived(frame(TEXT, b"look"))
    turns = 0
    while (calm.session.sid, "look") not in portal.lines:
        portal.turns(1)
        turns += 1
    assert turns <= -(-len(flooders) // round(TURN * 1000)) + 1
    assert all(wire.session.input.pending for wire in flooders)  # the flood is far from over


def test_a_page_that_does_not_log_in_is_closed_after_its_idle_time():
    portal = FakeWebPortal()
    idle, idle_socket = web_connect(portal, "10.0.0.1")
    player, player_socket = web_connect(portal, "10.0.0.2")
    player.session.logged_in(7, "Ann")
    assert b'{"player": "Ann"}' in player_socket.value()
    portal.advance(LOGIN_IDLE)
    assert b"You did not log in for 5 minutes: goodbye." in idle_socket.value()
    assert idle.state == idle.STATE_CLOSING          # the close frame is sent
    assert player.state == player.STATE_OPEN


# -- the page --------------------------------------------------------------------------------
# -- the page --------------------------------------------------------------------------------

def test_the_page_its_script_and_style_are_served_as_utf8_with_a_strict_policy(server):
    page = get(server, "/")
    html = page.read().decode("utf-8")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script src="client.js"' in html and 'href="client.css"' in html
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for path, kind in (("/client.js", "text/javascript"), ("/client.css", "text/css"),
                       ("/favicon.svg", "image/svg+xml")):
        answer = get(server, path)
        assert answer.status == 200 and answer.read(), path
        assert answer.headers["Content-Type"] == f"{kind}; charset=utf-8", path
    missing = get(server, "/evasync.db")
    assert missing.status == 404
    missing.read()


def test_a_request_body_is_cut_off(server, admin):
    address = urlsplit(server.web)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    try:
        for _ in range(100):
            sock.sendall(b"x" * 65536)
    except OSError:
        pass                      # the server hung up: what should happen
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()
    admin.command("look", "The Demo Room")


def test_a_page_from_another_site_may_not_open_the_websocket(server, web):
    assert web(origin="http://attacker.example").status == 403
    assert web(origin=server.web.rstrip("/")).status == 101


# -- playing ---------------------------------------------------------------------------------

def test_web_and_telnet_players_see_each_other(server, admin, web):
    ada = web("Ada")
    assert ada.message("player") == {"player": "Ada"}
    tom = server.client("Tom", PASSWORD)
    try:
        ada.command("who", r"Connected \(\d+\): .*Ada.*Tom")
        tom.command("who", r"Connected \(\d+\): .*Ada.*Tom")
        ada.command("say naïve ☕ <b>x</b>", 'You say, "naïve ☕ <b>x</b>"')
        tom.expect('Ada says, "naïve ☕ <b>x</b>"')
        tom.command("say hello web", 'You say, "hello web"')
        ada.expect('Tom says, "hello web"')
    finally:
        tom.close()


def test_questions_and_the_same_account_from_either_side(server, web):
    trader = web("Trader")
    trader.command("sell old map", r"offers 21 gold for old map\. Deal\? \(yes/no\)")
    trader.command("yes", "You sell old map for 21 gold.")
    trader.command("quit", "Goodbye!")
    trader.wait_closed()
    assert trader.close_code == 1000
    again = server.client()
    again.login("Trader", PASSWORD, create=False)
    again.command("look", "The Demo Room")
    again.close()


def test_a_message_of_several_lines_is_several_lines_and_fragments_are_joined(web):
    walker = web("Walker")
    walker.send("north\nsouth")
    walker.expect("You walk north")
    walker.expect("You walk south")
    walker.send_raw(frame(TEXT, b"ea", fin=False) + frame(0x0, b"st"))
    walker.expect("You walk east")


def test_a_line_that_looks_like_json_is_a_line(web):
    """Lines are never parsed by the server: JSON, broken or not, is an unknown command."""
    walker = web("Jason")
    walker.command('{"text": "north"', r"Command '\{\"text\":' is not available")
    walker.command("north", "You walk north")


def test_overlong_lines_are_cut_with_a_message(web):
    talker = web("Talker")
    talker.send("say " + "x" * (MAX_LINE * 3))
    talker.expect(f"only its first {MAX_LINE} bytes were used")
    said = talker.expect(r'You say, "(x+)"')
    assert len(said.group(1)) == MAX_LINE - len("say ")


# -- hostile input ---------------------------------------------------------------------------

def test_a_binary_message_closes_with_a_reason(admin, web):
    junk = web("Junk")
    junk.send_raw(frame(BINARY, bytes(range(256))))
    junk.wait_closed()
    assert junk.close_code == REFUSED and "not binary" in junk.close_reason
    admin.command("look", "The Demo Room")


def test_a_huge_frame_is_refused_from_its_header(admin, web):
    """The frame claims 1 GiB; the server closes before any of it arrives."""
    giant = web()
    giant.send_raw(frame(TEXT, b"", length=1 << 30))
    giant.wait_closed()
    assert giant.close_code == 1009 and str(MAX_MESSAGE) in giant.close_reason
    admin.command("look", "The Demo Room")


def test_a_huge_message_in_small_fragments_is_refused(admin, web):
    sneaky = web()
    piece = frame(TEXT, b"x" * 4096, fin=False)
    try:
        sneaky.send_raw(piece + frame(0x0, b"x" * 4096, fin=False) * (MAX_MESSAGE // 4096 + 2))
    except OSError:
        pass
    sneaky.wait_closed()
    assert sneaky.close_code == 1009
    admin.command("look", "The Demo Room")


def test_invalid_utf8_and_broken_frames_close_with_the_protocol_codes(admin, web):
    garbled = web()
    garbled.send_raw(frame(TEXT, b"say \xc3\x28"))
    garbled.wait_closed()
    assert garbled.close_code == 1007
    unmasked = web()
    unmasked.send_raw(bytes([0x81, 5]) + b"north")   # a client frame must be masked
    unmasked.wait_closed()
    assert unmasked.close_code == 1002
    admin.command("look", "The Demo Room")


def test_a_flood_is_slowed_down_and_others_are_answered(admin, web):
    flooder = web("Flooder")
    flooder.send_raw(frame(TEXT, b"north") * 300)
    flooder.expect("your input is slowed down")
    for _ in range(5):
        admin.command("south", "You walk south")
    wait_for(lambda: flooder.expect("You walk north", timeout=60) and
             flooder.text.count("You walk north") == 300, timeout=60,
             what="every line of the flood, slowed down, none dropped")
    flooder.command("say still here", 'You say, "still here"', timeout=60)


def test_connections_from_one_address_are_capped_pages_included(server, admin, web):
    source = address()
    telnet = server.client(source=source)
    pages = [web(source=source) for _ in range(MAX_PER_ADDRESS - 1)]
    assert all(page.status == 101 and not page.closed for page in pages)
    refused = web(source=source, banner=False)
    refused.wait_closed()
    assert refused.close_code == HUNG_UP and "Too many connections" in refused.close_reason
    assert "Too many connections from your address" in refused.text
    pages[0].close()

    def admitted():
        page = web(source=source, banner=False)
        try:
            page.expect("create <name> <password>")
        except AssertionError:
            return False
        return True

    wait_for(admitted, what="the place of the closed page")
    telnet.close()


def test_a_flood_of_pings_costs_others_nothing_but_time(admin, web):
    pinger = web()
    pings = b"".join(frame(PING, b"") for _ in range(100_000))   # 600 kB that make no line
    sender = threading.Thread(target=_send_quietly, args=(pinger.sock, pings), daemon=True)
    sender.start()
    for _ in range(5):
        admin.command("south", "You walk south")
    pinger.close()
    sender.join(timeout=60)
    admin.command("look", "The Demo Room")


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_a_page_that_stops_reading_is_hung_up_on(server, admin, web):
    flood_until_hung_up(admin, web("Deaf"), "Deaf")
    assert "<WebSession" in server.log() and "not reading its output; hanging up" in server.log()


def test_close_and_ping_frames_are_answered(web):
    polite = web()
    polite.send_raw(frame(0x9, b"are you there"))
    polite.send_raw(frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    polite.wait_closed()
    assert polite.close_code == 1000


# -- connections from everywhere --------------------------------------------------------------

def test_connections_from_all_addresses_together_are_capped(tmp_path):
    """One machine has many addresses (all of 127/8, an IPv6 block): the per-address limits
    alone let it open sockets until the portal runs out of files, and nobody else gets in."""
    server = Server(tmp_path, options=["--max-connections", "3"]).start()
    try:
        web_host, web_port = urlsplit(server.web).hostname, urlsplit(server.web).port
        first, second = server.client(), server.client()
        page = WebSocketClient(server.web, source=address())
        page.expect("create <name> <password>")          # a page counts as a connection
        full = "The server is full (connection limit: 3); try again later."
        refused = Client(server.port, source=address())
        refused.expect(re.escape(full))
        refused.wait_closed()
        refused_page = WebSocketClient(server.web, source=address())
        refused_page.expect(re.escape(full))
        refused_page.wait_closed()
        # The web port holds at most twice as many sockets, HTTP ones too: the page's and five
        # more (four while the refused page's is not closed yet).
        refused_page.close()
        held: list[socket.socket] = []
        wait_for(lambda: _refused_or_held(web_host, web_port, held),
                 what="a web socket to be refused")
        assert 4 <= len(held) <= 5
        for sock in held:
            sock.close()
        first.close()
        wait_for(lambda: _telnet_accepted(server), what="a connection to be accepted again")
        second.command("look", "You are not logged in yet")  # the others were served all along
        log = server.log()
        assert "refusing connections: 3 are open" in log
        assert "refusing sockets on the web port: 6 are open" in log
    finally:
        server.stop()


def test_max_connections_reaches_a_daemon_and_nonsense_is_refused(tmp_path):
    db = tmp_path / "evasync.db"
    bad = evasync("start", "--port", "0", "--max-connections", "0", db=db)
    assert bad.returncode == 2 and "--max-connections must be at least 1, not 0" in bad.stderr
    started = evasync("start", "--port", "0", "--no-web", "--max-connections", "1", db=db)
    assert started.returncode == 0, started.stderr
    try:
        port = RunDir(db).state()["port"]
        first = Client(port, source=address())
        first.expect("create <name> <password>")
        second = Client(port, source=address())
        second.expect(re.escape("The server is full (connection limit: 1)"))
        first.close()
    finally:
        assert evasync("stop", db=db).returncode == 0


def _refused_or_held(host: str, port: int, held: list[socket.socket]) -> bool:
    """Open a socket to the web port and ask for the page: True if the server closed it
    instead of answering; else it stays open (kept alive), added to ``held``."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT, source_address=(address(), 0))
    answer = b""
    try:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    except OSError:   # reset: refused as well
        pass
    if answer.startswith(b"HTTP/1.1 200"):
        held.append(sock)
        return False
    sock.close()
    return True


def _telnet_accepted(server: Server) -> bool:
    client = Client(server.port, source=address())
    try:
        client.expect(r"create <name> <password>|The server is full")
        return "create <name>" in client.text
    finally:
        client.close()


def test_the_portal_raises_its_open_file_limit_as_far_as_the_system_allows():
    import resource

    from evasync.server.portal import raise_file_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # In a child with a low soft limit, as many systems have (1,024).
    code = ("import resource; from evasync.server.portal import raise_file_limit; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit("
            "resource.RLIMIT_NOFILE)[1])); "
            "print(raise_file_limit(300), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=TIMEOUT)
    allowed = 300 if hard == resource.RLIM_INFINITY else min(300, hard)
    assert done.stdout.split() == [str(allowed), str(allowed)]
    assert raise_file_limit(10) == (10 if soft == resource.RLIM_INFINITY else soft)  # enough


# -- the server's state ----------------------------------------------------------------------

def test_the_page_is_told_of_a_reload_and_stays_connected(tmp_path):
    server = Server(tmp_path).start()
    try:
        ada = WebSocketClient(server.web)
        assert ada.message("game") == {"game": "ready", "notice": ""}
        ada.login("Ada", PASSWORD)
        ada.command("brew tea", "You set a cauldron of tea to simmer")
        ada.command("reload", "The server is reloading")
        assert ada.message("game") == {
            "game": "reloading", "notice": "The game is reloading; you stay connected."}
        assert ada.message("game") == {"game": "ready", "notice": ""}
        ada.expect("the server has been reloaded")
        ada.command("look", "The Demo Room")
        ada.expect("Your tea is ready", timeout=60)
        server.stop()
        ada.expect("The server is shutting down")
        ada.wait_closed()
        assert ada.close_code == STOPPING
    finally:
        server.close()


def test_the_page_knows_the_close_codes():
    script = CLIENT.joinpath("client.js").read_text()
    assert f"STOPPING = {STOPPING}" in script
    assert f"HUNG_UP = [{REFUSED}, {HUNG_UP}," in script


# -- the command line ------------------------------------------------------------------------

@pytest.mark.parametrize("args, web", [
    ([], ("127.0.0.1", 4001)),
    (["--port", "5000"], ("127.0.0.1", 5001)),
    (["--port", "0"], ("127.0.0.1", 0)),
    (["--host", "::1", "--web-port", "8080"], ("::1", 8080)),
    (["--web-host", "0.0.0.0"], ("0.0.0.0", 4001)),
    (["--no-web"], None),
])
def test_the_web_client_listens_beside_telnet_unless_told_otherwise(monkeypatch, args, web):
    from evasync.__main__ import main
    from evasync.server import control

    started = {}
    monkeypatch.setattr(control, "start", lambda *a, **kw: started.update(kw) or 0)
    assert main(["start", *args]) == 0
    assert started["web"] == web


def test_a_web_port_out_of_range_is_refused_with_the_way_out(capsys):
    from evasync.__main__ import main

    with pytest.raises(SystemExit):
        main(["start", "--port", "65535"])
    assert "not 65536 (give --web-port, or --no-web)" in capsys.readouterr().err


def test_the_daemon_says_where_the_web_client_is_and_can_go_without(tmp_path):
    db = tmp_path / "evasync.db"
    started = evasync("start", "--port", "0", "--speed", "10", db=db)
    try:
        assert started.returncode == 0, started.stderr
        assert re.search(r"web client http://127\.0\.0\.1:\d+/", started.stdout), started.stdout
        status = evasync("status", db=db)
        url = re.search(r"web client (http://\S+/)", status.stdout).group(1)
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b'<script src="client.js"' in page.read()
    finally:
        evasync("stop", db=db)
    started = evasync("start", "--port", "0", "--no-web", db=db)
    try:
        assert started.returncode == 0, started.stderr
        assert "web client" not in started.stdout
        assert RunDir(db).state()["web"] is None
    finally:
        evasync("stop", db=db)


@pytest.mark.parametrize("host, web, exposed", [
    ("127.0.0.1", ("127.0.0.1", 4001), None),
    ("::1", ("localhost", 4001), None),
    ("127.0.0.1", None, None),
    ("0.0.0.0", None, "0.0.0.0"),
    ("127.0.0.1", ("0.0.0.0", 4001), "0.0.0.0"),
    ("192.0.2.7", ("game.example", 4001), "192.0.2.7, game.example"),
])
def test_listening_beyond_loopback_warns_that_the_first_account_is_the_superuser(
        monkeypatch, tmp_path, capsys, host, web, exposed):
    from evasync.server import control, portal

    monkeypatch.setattr(portal, "run", lambda *args: 0)
    assert control.start(host, 4000, str(tmp_path / "evasync.db"), True, web=web) == 0
    err = capsys.readouterr().err
    if exposed is None:
        assert "warning" not in err
    else:
        assert f"warning: listening beyond loopback ({exposed}): the first account created " \
               "becomes the superuser" in err
