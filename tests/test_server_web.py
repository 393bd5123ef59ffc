"""The web client's server side, with real sockets: the page over HTTP, players on WebSockets.

One server (``--speed 10``, any free ports) serves the module. The WebSocket clients here are
:class:`~tests._web_support.WebSocketClient`: they speak the protocol frame by frame, so they
can also send what no browser would. Whatever they send, the answer is a clear close or a
dropped message, and a telnet player meanwhile is answered.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
import urllib.request
from urllib.parse import urlsplit

import pytest
from twisted.internet.task import Clock

from evasync.server.rundir import RunDir
from evasync.server.telnet import (BACKLOG_MAX, BURST, BYTE_BURST, BYTE_RATE, MAX_LINE,
                                   QUEUE_MAX, RATE)
from evasync.server.web import (CLIENT, HUNG_UP, MAX_MESSAGE, REFUSED, SLICE, STOPPING,
                                _PacedInput)

from ._server_support import Server, evasync, wait_for
from ._web_support import BINARY, CLOSE, PING, TEXT, WebSocketClient, frame

PASSWORD = "secret-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("web")).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def admin(server):
    """A telnet player, the superuser (the first account made)."""
    client = server.client("Admin", PASSWORD)
    yield client
    client.close()


@pytest.fixture
def web(server, admin):
    """Makes WebSocket clients on the server's web client (closed after the test)."""
    made = []

    def make(name: str | None = None, **kwargs) -> WebSocketClient:
        client = WebSocketClient(server.web, **kwargs)
        made.append(client)
        if client.status == 101:
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

class Reading:
    """Stands for a socket's reading side: counts pauses and resumes."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        assert not self.paused, "paused twice: two owners of the socket's reading"
        self.paused, self.pauses = True, self.pauses + 1

    def resumeProducing(self) -> None:
        assert self.paused, "resumed while reading"
        self.paused = False


def paced(decode=lambda data: data):
    clock, reading, lines, notices, chunks = Clock(), Reading(), [], [], []

    def record(data):
        chunks.append(len(data))
        return decode(data)

    paced = _PacedInput(clock, reading, lines.append, notices.append, record, "page")
    return paced, clock, reading, lines, notices, chunks


def test_lines_beyond_the_rate_wait_and_the_socket_is_not_read_meanwhile():
    page, clock, reading, lines, notices, _ = paced()
    page.received(b"north\n" * (BURST + 10))
    assert len(lines) == BURST and reading.paused
    assert notices == ["You are typing faster than 20 lines a second: your input is slowed "
                       "down."]
    clock.advance(9 / RATE)
    assert len(lines) == BURST + 9 and reading.paused
    clock.advance(1 / RATE)
    assert len(lines) == BURST + 10 and not reading.paused


def test_lines_beyond_the_queue_are_dropped_and_the_player_is_told_how_many():
    page, clock, reading, lines, notices, _ = paced()
    page.received(b"x\n" * (BURST + QUEUE_MAX + 25))
    assert len(lines) == BURST
    assert notices[-1] == f"Too much input waiting: lines beyond {QUEUE_MAX} are dropped."
    clock.pump([1 / RATE] * QUEUE_MAX)
    assert len(lines) == BURST + QUEUE_MAX and not reading.paused
    assert notices[-1] == "25 line(s) of your input were dropped."


def test_bytes_that_make_no_line_are_limited_too():
    """Pings, pongs, fragments: every byte counts, whether it makes a line or not."""
    page, clock, reading, lines, _, chunks = paced(decode=lambda data: b"")
    page.received(b"\x89\x80" * (BYTE_BURST // 2))
    assert not reading.paused
    page.received(b"\x89\x80" * 1000)              # 2000 bytes beyond the burst
    assert reading.paused and lines == []
    clock.advance(1000 / BYTE_RATE)
    assert reading.paused
    clock.advance(1000 / BYTE_RATE)
    assert not reading.paused
    assert max(chunks) == SLICE    # parsed a slice at a time, not in one go


def test_the_byte_limit_and_the_line_limit_share_the_socket():
    page, clock, reading, lines, _, _ = paced()
    page.received(b"north\n" * (BURST + QUEUE_MAX))
    page.received(b" " * BYTE_BURST)                 # no line: only the byte limit
    assert reading.pauses == 1
    clock.advance(BYTE_BURST / BYTE_RATE)            # bytes refilled: lines still waiting
    assert reading.paused
    clock.pump([1 / RATE] * QUEUE_MAX)
    assert not reading.paused and len(lines) == BURST + QUEUE_MAX


def test_an_overlong_line_is_cut_and_its_rest_skipped():
    page, _, _, lines, notices, _ = paced()
    page.received(b"say " + b"x" * (MAX_LINE * 2))
    page.received(b"yyy\nnorth\n")
    assert lines == [b"say " + b"x" * (MAX_LINE - 4), b"north"]
    assert notices == [f"Your line was too long: only its first {MAX_LINE} bytes were used."]


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
    flooder.send_raw(frame(TEXT, b"north") * 3000)
    flooder.expect("your input is slowed down")
    flooder.expect(f"lines beyond {QUEUE_MAX} are dropped")
    for _ in range(5):
        admin.command("south", "You walk south")
    flooder.expect(r"(\d+) line\(s\) of your input were dropped", timeout=60)
    assert not flooder.closed
    flooder.command("say still here", 'You say, "still here"', timeout=60)


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
    deaf = web("Deaf")
    deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = 100_000
    admin.command(f"py d = evasync.search_object('Deaf')[0]; "
                  f"[d.msg('x' * {chunk}) for i in range({BACKLOG_MAX * 40 // chunk})]; 'sent'",
                  "<<< 'sent'")
    wait_for(lambda: "Deaf" not in admin.command("who", r"Connected.*").group(0),
             what="Deaf to be hung up on")
    admin.command("look", "The Demo Room")
    assert "<WebSession" in server.log() and "not reading its output; hanging up" in server.log()


def test_close_and_ping_frames_are_answered(web):
    polite = web()
    polite.send_raw(frame(0x9, b"are you there"))
    polite.send_raw(frame(CLOSE, struct.pack("!H", 1000) + b"bye"))
    polite.wait_closed()
    assert polite.close_code == 1000


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
