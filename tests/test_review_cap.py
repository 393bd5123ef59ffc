"""A hostile review of ``--max-connections`` and of the shorter persistent-delay codec, each
test written to fail before its fix.

The cap's counters were probed for drift (a socket refused per address, a WebSocket that fails
its handshake, an HTTP socket upgraded then closed, a session refused by the portal, pipelined
requests before an upgrade): they held. What did not: the web port's sockets were capped at the
players' cap, so page loads took players' places; the "full" warning was logged again after
every departure; and an int too long for Python to write escaped as a bare ValueError.
"""

from __future__ import annotations

import re
import sys

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.python.failure import Failure

import evasync
from evasync import NotPersistableError
from evasync._codec import dumps, dumps_arguments, dumps_keywords, loads
from evasync.server import portal as portal_module
from evasync.server import web
from evasync.server.limits import FULL_QUIET
from evasync.server.portal import Portal
from evasync.server.rundir import RunDir
from evasync.server.telnet import TelnetSession, TelnetTransport

from . import _support

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:4001\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
PAGE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:4001\r\n\r\n"   # HTTP/1.1: the socket is kept alive


class Portal_:
    """A real :class:`Portal` in virtual time, no game process, with its web port's site; it
    connects telnet and web sockets (``StringTransport``) as the reactor would."""

    def __init__(self, folder, max_connections: int) -> None:
        self.clock = Clock()
        self.portal = Portal(self.clock, RunDir(folder / "evasync.db"), "127.0.0.1", 0,
                             web=("127.0.0.1", 4001), max_connections=max_connections)
        self.site = web.site(self.portal)
        self._port = 40000

    def _peer(self, host: str) -> IPv4Address:
        self._port += 1
        return IPv4Address("TCP", host, self._port)

    def telnet(self, host: str = "10.0.0.1") -> StringTransport:
        sock = StringTransport(peerAddress=self._peer(host))
        sock.protocol = TelnetTransport(TelnetSession, self.portal)
        sock.protocol.makeConnection(sock)
        return sock

    def http(self, host: str = "10.0.0.2") -> StringTransport | None:
        """A socket of the web port, or None if it was refused at once."""
        peer = self._peer(host)
        channel = self.site.buildProtocol(peer)
        if channel is None:
            return None
        sock = StringTransport(peerAddress=peer,
                               hostAddress=IPv4Address("TCP", "127.0.0.1", 4001))
        sock.protocol = channel   # as a real socket has it (a WebSocket takes it over)
        channel.makeConnection(sock)
        return sock

    def page(self, host: str = "10.0.0.2") -> StringTransport | None:
        """A browser's WebSocket (None if its socket was refused)."""
        sock = self.http(host)
        if sock is not None:
            sock.protocol.dataReceived(UPGRADE)
        return sock


def lose(sock: StringTransport) -> None:
    sock.protocol.connectionLost(Failure(ConnectionDone()))


FULL = "The server is full (connection limit: {n}); try again later."


# -- the web port's sockets and the players' cap ---------------------------------------------

def test_a_page_load_kept_alive_does_not_take_the_last_players_place(tmp_path):
    """A browser loads the page over a socket it keeps open (HTTP/1.1), then opens the
    WebSocket on another. Was: the web port held as many sockets as the server has players,
    so with one place left the WebSocket's socket was dropped at once, unexplained, although
    the portal had a place for it."""
    server = Portal_(tmp_path, max_connections=2)
    server.page()                                   # a player already on the web client
    loaded = server.http()
    loaded.protocol.dataReceived(PAGE)
    assert loaded.value().startswith(b"HTTP/1.1 200") and not loaded.disconnecting
    second = server.page()
    assert second is not None, "the second player's WebSocket was refused at the socket"
    assert len(server.portal.sessions) == 2


def test_a_browser_is_told_the_server_is_full_even_when_every_player_is_on_the_web(tmp_path):
    """The reference says one more is told that the server is full. Was: with every place
    taken by a page, the web port refused the next browser's sockets at once: no page, no
    word why."""
    server = Portal_(tmp_path, max_connections=2)
    players = [server.page(), server.page()]
    assert len(server.portal.sessions) == 2
    loaded = server.http()
    assert loaded is not None, "the page could not even be loaded"
    loaded.protocol.dataReceived(PAGE)
    assert loaded.value().startswith(b"HTTP/1.1 200")
    refused = server.page()
    assert refused is not None
    assert FULL.format(n=2).encode() in refused.value()
    assert len(server.portal.sessions) == 2
    for sock in players + [loaded, refused]:
        lose(sock)
    assert server.site.total == 0 and not server.site.open and not server.portal.sessions


def test_the_web_port_still_holds_a_bounded_number_of_sockets(tmp_path):
    """Sockets that never become players (from many addresses: one machine has many) are
    capped at the players' cap with as many again for page loads, as one address's are."""
    server = Portal_(tmp_path, max_connections=3)
    held = [server.http(f"10.0.1.{i}") for i in range(2 * 3)]
    assert all(held)
    assert server.http("10.0.2.1") is None
    lose(held[0])
    assert server.http("10.0.2.1") is not None


def test_the_portal_asks_for_a_file_for_every_socket_it_may_hold(tmp_path):
    """A telnet player each, and every socket the web port may hold. Was: 2 files a player,
    fewer than a full web port and as many telnet players take."""
    server = Portal_(tmp_path, max_connections=10)
    sockets = server.portal.max_connections + server.site.max_sockets
    assert portal_module.files_needed(10) >= sockets + portal_module.SPARE_FILES


# -- the "full" warning -------------------------------------------------------------------------

def test_a_full_server_says_so_once_while_players_come_and_go(tmp_path, logged):
    """On a full server every departure lets one newcomer in and the next is refused. Was: a
    warning for each such refusal, as many lines as players leaving (and one client that
    closes and opens sockets writes the log a line per three sockets)."""
    server = Portal_(tmp_path, max_connections=3)
    telnet = [server.telnet(f"10.0.1.{i}") for i in range(3)]
    for i in range(20):
        server.clock.advance(1)
        lose(telnet.pop(0))
        telnet.append(server.telnet(f"10.0.2.{i}"))
        refused = server.telnet(f"10.0.3.{i}")
        assert FULL.format(n=3).encode() in refused.value()
        lose(refused)
    assert _warnings(logged, "refusing connections") == 1
    server.clock.advance(FULL_QUIET)   # a quiet spell ends the episode
    refused = server.telnet("10.0.4.1")
    assert FULL.format(n=3).encode() in refused.value()
    assert _warnings(logged, "refusing connections") == 2
    assert len(server.portal.sessions) == 3


def test_a_full_web_port_says_so_once_while_sockets_come_and_go(tmp_path, logged):
    server = Portal_(tmp_path, max_connections=1)
    held = [server.http(f"10.0.1.{i}") for i in range(server.site.max_sockets)]
    for i in range(20):
        server.clock.advance(1)
        lose(held.pop(0))
        held.append(server.http(f"10.0.2.{i}"))
        assert server.http(f"10.0.3.{i}") is None
    assert _warnings(logged, "refusing sockets on the web port:") == 1
    server.clock.advance(FULL_QUIET)
    assert server.http("10.0.4.1") is None
    assert _warnings(logged, "refusing sockets on the web port:") == 2


def _warnings(logged, start: str) -> int:
    return sum(text.startswith(start) for text in logged.texts(LogLevel.warn))


# -- ints too long for Python to write ---------------------------------------------------------

HUGE = 10 ** 5000   # more digits than Python writes by default (sys.get_int_max_str_digits)


def test_an_int_too_long_to_write_is_refused_as_unstorable_and_named():
    """Was: Python's ValueError ("Exceeds the limit (4300 digits) ...") from the codec, not
    the NotPersistableError delay() documents, and no word of which argument it was."""
    too_long = f"an int of more than {sys.get_int_max_str_digits()} digits"
    with pytest.raises(NotPersistableError, match=re.escape(f"argument list of f[1] cannot be "
                                                            f"stored: {too_long}")):
        dumps_arguments((1, HUGE), _owner("f"))
    with pytest.raises(NotPersistableError, match=re.escape("keyword arguments of f['n']")):
        dumps_keywords({"n": HUGE}, _owner("f"))
    with pytest.raises(NotPersistableError, match=re.escape("value[0]['deep'] cannot be")):
        dumps([{"deep": -HUGE}], "value")
    longest = 10 ** sys.get_int_max_str_digits() - 1
    assert dumps_arguments((longest,), None) == f"[{longest}]"   # as long as may be
    assert loads(dumps([longest], "value"), None) == [longest]


def test_delay_refuses_an_int_too_long_to_store_and_schedules_nothing(rt):
    with pytest.raises(NotPersistableError, match="an int of more than"):
        evasync.delay(1, _support.record, HUGE, persistent=True)
    assert not rt.tasks.all()
    evasync.delay(1, _support.record, HUGE)   # not stored: nothing to refuse
    rt.advance(1)
    assert _support.CALLS == [((HUGE,), {})]


def _owner(name):
    def owner():
        pass
    owner.__qualname__ = name
    return owner
