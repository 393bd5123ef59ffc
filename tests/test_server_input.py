"""The portal's input path in virtual time: telnet parsing, fair turns, one throttle per
connection, the login idle timeout, and the outbox that never loses one player's messages to
another's bad text. No sockets: connections are ``StringTransport``s on a ``task.Clock``."""

from __future__ import annotations

import itertools
import json

from twisted.conch import telnet
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.protocols import amp

from evasync.server.fairness import (BURST, BYTE_BURST, BYTE_RATE, HIGH_WATER, RATE, SLICE,
                                     TURN)
from evasync.server.protocol import Outbox, ToPortal
from evasync.server.session import LOGIN_IDLE

from ._server_support import FakePortal

# -- telnet -------------------------------------------------------------------------------------

STREAM = (b"\xff\xfb\x1f"                          # WILL NAWS (the server asked for it)
          b"\xff\xfa\x1f\x00\x84\x00\x18\xff\xf0"  # the window is 132 x 24
          b"look\r\n" + b"\xff\xf1" * 40 +         # a line, then NOPs
          b"say h\xc3\xa9\r\0"                     # UTF-8, ended by CR NUL
          b"\xff\xfd\x05"                          # DO STATUS: refused
          b"x\xff\xff\xf1y\r\n"                    # an escaped 255 (not text in UTF-8)
          b"\xff\x01z\n")                          # IAC and no command, a bare LF


def _play(chunks):
    portal = FakePortal()
    wire, sock = portal.connect()
    sock.clear()
    for chunk in chunks:
        wire.dataReceived(chunk)
    portal.advance(0)
    return [line for _, line in portal.lines], wire.protocol.width, sock.value()


def test_telnet_input_is_parsed_the_same_however_it_is_cut_into_packets():
    whole = _play([STREAM])
    assert whole == (["look", "say hé", "xy", "z"], 132, b"\xff\xfc\x05")  # WONT STATUS
    for cut in range(1, len(STREAM)):
        assert _play([STREAM[:cut], STREAM[cut:]]) == whole, cut
    assert _play([STREAM[i:i + 1] for i in range(len(STREAM))]) == whole


def test_a_run_of_telnet_commands_takes_no_python_call_per_command(monkeypatch):
    handled = []
    original = telnet.Telnet.commandReceived
    monkeypatch.setattr(telnet.Telnet, "commandReceived",
                        lambda self, command, argument: (handled.append(command),
                                                         original(self, command, argument)))
    lines, _, _ = _play([b"lo" + b"\xff\xf1" * 200_000 + b"ok\r\n"])
    assert lines == ["look"]
    assert handled == []  # conch's parser called it once per NOP: 200,000 times


def test_input_waits_for_its_turn_and_is_parsed_a_slice_at_a_time():
    portal = FakePortal()
    wire, _ = portal.connect()
    junk = b"\xff\xf1" * 100_000
    wire.dataReceived(junk + b"look\r\n")
    assert wire.protocol.input.pending >= len(junk) - SLICE  # one slice at most, on arrival
    portal.turns(len(junk) // SLICE + 1)
    assert portal.lines == [(wire.protocol.sid, "look")]


def test_a_quiet_player_waits_behind_one_slice_of_each_flooder_at_most():
    readings = itertools.count()
    milliseconds = lambda: next(readings) / 1000  # each slice "takes" 1 ms (between 2 readings)
    portal = FakePortal(timer=milliseconds)
    flooders = [portal.connect(f"10.0.1.{i}")[0] for i in range(20)]
    for wire in flooders:
        wire.dataReceived(b"\xff\xf1" * 32_768)
    calm = portal.connect("10.0.2.1")[0]
    calm.dataReceived(b"look\r\n")
    per_turn = round(TURN * 1000)
    turns = 0
    while (calm.protocol.sid, "look") not in portal.lines:
        before = next(readings)
        portal.turns(1)
        turns += 1
        served = (next(readings) - before - 1) // 2
        assert served <= per_turn + 1  # the turn's time, overrun by one slice at most
    assert turns <= -(-len(flooders) // per_turn) + 1
    assert all(wire.protocol.input.pending for wire in flooders)  # the flood is far from over


def test_one_throttle_owns_the_socket_and_no_line_is_dropped():
    portal = FakePortal()
    wire, sock = portal.connect()
    lines = [f"line {i:05d} ".ljust(50, ".") for i in range(6000)]
    payload = b"\xff\xf1" * (BYTE_BURST // 2) + "".join(f"{line}\r\n" for line in lines).encode()
    chunks = [payload[at:at + 65_536] for at in range(0, len(payload), 65_536)]
    read = 0
    step = 0.05
    enough = 2 * len(lines) / RATE  # seconds of virtual time: twice what the line rate needs
    while (chunks or len(portal.lines) < len(lines)) and portal.reactor.seconds() < enough:
        if chunks and sock.producerState == "producing":  # a socket is read only if not paused
            chunk = chunks.pop(0)
            wire.dataReceived(chunk)
            read += len(chunk)
        portal.advance(step)
        now = portal.reactor.seconds()
        if sock.producerState == "producing":
            # Never read on while lines pile up (the byte-rate timer once resumed it anyway).
            assert wire.protocol.input.pending < HIGH_WATER, now
        assert read <= BYTE_BURST + BYTE_RATE * now + 65_536
        assert len(portal.lines) <= BURST + RATE * now
    assert [line for _, line in portal.lines] == lines
    assert b"your input is slowed down" in sock.value()


def test_a_connection_that_does_not_log_in_is_closed_after_its_idle_time():
    portal = FakePortal()
    idle, idle_socket = portal.connect("10.0.0.1")
    typing, typing_socket = portal.connect("10.0.0.2")
    player, player_socket = portal.connect("10.0.0.3")
    player.protocol.logged_in(7, "Ann")
    for _ in range(4):
        portal.advance(LOGIN_IDLE / 3)
        typing.dataReceived(b"help\r\n")
    assert idle_socket.disconnecting and not typing_socket.disconnecting
    assert b"You did not log in for 5 minutes: goodbye." in idle_socket.value()
    portal.advance(LOGIN_IDLE)
    assert typing_socket.disconnecting and not player_socket.disconnecting
    player.protocol.logged_in(None, "")  # a character gone after a reload: the clock starts
    portal.advance(LOGIN_IDLE)
    assert player_socket.disconnecting


# -- the outbox ---------------------------------------------------------------------------------

def test_one_bad_text_costs_nobody_else_their_messages(logged):
    received = []

    class PortalSide(amp.AMP):
        @ToPortal.responder
        def to_portal(self, events):
            received.extend(events)
            return {}

    portal, game = PortalSide(), amp.AMP()
    portal.makeConnection(StringTransport())
    wire = StringTransport()
    game.makeConnection(wire)
    clock = Clock()
    outbox = Outbox(clock, ToPortal, lambda: game)
    name = b"notes-\xff.txt".decode("utf-8", "surrogateescape")  # what os.listdir gives
    outbox.put("send", 1, "Hello, Ann.")
    outbox.put("send", 2, f"Files: {name}")
    outbox.put("send", 3, "Hello, Cy.")
    clock.advance(0)
    portal.dataReceived(wire.value())
    assert received == [["send", 1, "Hello, Ann."], ["send", 2, "Files: notes-\\udcff.txt"],
                        ["send", 3, "Hello, Cy."]]
    assert any("not valid Unicode" in text for text in logged.texts(LogLevel.warn))


def test_the_outbox_sends_at_once_after_a_quiet_spell_and_groups_a_busy_spell():
    """Under load, one box every SPACING seconds carries everything queued meanwhile (one
    write and one wake-up of the other process instead of one per event), in order, nothing
    lost; the first event after a quiet spell is not held back."""
    boxes = []

    class Link:
        def callRemote(self, command, events):
            boxes.append([json.loads(event) for event in events])

    clock = Clock()
    clock.advance(1000)
    outbox = Outbox(clock, ToPortal, lambda: Link(), spacing=0.002)
    outbox.put("send", 1, "first")
    clock.advance(0)
    assert boxes == [[["send", 1, "first"]]]            # a quiet link: sent at once
    clock.advance(0.0005)
    outbox.put("send", 2, "second")
    outbox.put("send", 3, "third")
    clock.advance(0)
    assert len(boxes) == 1                              # held: the last box went 0.5 ms ago
    clock.advance(0.0015)
    assert boxes[1:] == [[["send", 2, "second"], ["send", 3, "third"]]]
    clock.advance(1.0)
    outbox.put("send", 4, "after a pause")
    clock.advance(0)
    assert boxes[2:] == [[["send", 4, "after a pause"]]]


def test_the_outbox_holds_nothing_longer_than_its_spacing_when_the_clock_is_set_back():
    boxes = []

    class Link:
        def callRemote(self, command, events):
            boxes.append(events)

    clock = Clock()
    clock.advance(5000)
    outbox = Outbox(clock, ToPortal, lambda: Link(), spacing=0.002)
    outbox.put("send", 1, "before")
    clock.advance(0)
    clock.rightNow -= 3600                              # the wall clock went back an hour
    outbox.put("send", 1, "after")
    clock.advance(0.002)
    assert len(boxes) == 2
