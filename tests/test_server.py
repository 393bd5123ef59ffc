"""The demo server with several real telnet clients on loopback: accounts, commands, robustness.

One server (two processes) serves the whole module, with game time ten times faster: the howto's
ten-second ``wait`` takes one second. Every client connects from a loopback address of its own
(see ``_server_support``); the tests of per-address limits share one on purpose. No test here
asserts how long something took: that is for ``bench/`` (``bench_server``, ``bench_hostile``).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import threading
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from evasync.server.accounts import check_name, check_password, hash_password
from evasync.server.clock import ScaledClock
from evasync.server.commands import CmdPy
from evasync.server.game import CREATES_PER_ADDRESS, FREE_FAILURES
from evasync.server.portal import MAX_PER_ADDRESS
from evasync.server.fairness import MAX_LINE
from evasync.server.session import clean

from ._server_support import (TIMEOUT, Client, Server, address, flood_until_hung_up,
                              made_clients, wait_for)

EXEMPT = "127.2.0.1"  # the server is started with --exempt-address for this one
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), exempt=[EXEMPT]).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def admin(server):
    """The first account made: the superuser."""
    client = server.client("Admin")
    yield client
    client.close()


@pytest.fixture
def clients(server, admin):
    with made_clients(server) as make:
        yield make


# -- small pieces, no sockets ----------------------------------------------------------------

def test_passwords_are_salted_slow_hashes():
    first, second = hash_password("hunter2"), hash_password("hunter2")
    assert first != second and first.startswith("scrypt$") and "hunter2" not in first
    assert check_password("hunter2", first) and not check_password("hunter3", first)
    assert not check_password("hunter2", "garbage")


def test_names_are_checked():
    assert check_name("Alice") is None and check_name("bob_2") is None
    assert "letters" in check_name("1abc") and check_name("a b") and check_name("x")


def test_input_is_cleaned_of_junk():
    assert clean(b"look\x00 \x1b[31mred\x07") == "look [31mred"
    assert clean("café".encode()) == "café"
    assert clean(b"\xc3\x28ok\xff\xfe") == "(ok"


def test_scaled_clock_runs_game_time_faster():
    reactor = Clock()
    clock = ScaledClock(reactor, 10)
    fired = []
    clock.callLater(10, fired.append, "ten game seconds")
    reactor.advance(0.999)
    assert fired == []
    reactor.advance(0.001)
    assert fired == ["ten game seconds"] and clock.seconds() == 10.0


# -- accounts --------------------------------------------------------------------------------

def test_first_account_is_superuser_and_passwords_are_never_stored(server, admin, clients):
    admin.command("py self.db.superuser", r"<<< True")
    bob = clients("Bob", password="b0b-secret")
    bob.command("py 1", "Permission denied: you are not allowed to use 'py'")
    with sqlite3.connect(server.db) as conn:
        rows = conn.execute("SELECT name, password FROM accounts").fetchall()
    assert {name for name, _ in rows} >= {"Admin", "Bob"}
    assert all(stored.startswith("scrypt$") and "b0b-secret" not in stored for _, stored in rows)


def test_connect_create_and_errors(server, admin, clients):
    carol = clients("Carol", password="carol-pw")
    carol.command("quit", "Goodbye!")
    carol.wait_closed()
    again = clients()
    # A taken name gets the same answer as a reserved one: create tells nobody who has an account.
    again.command("create carol whatever", "The name 'carol' is not available; pick another.")
    again.command("create Root whatever", "The name 'Root' is not available; pick another.")
    again.command("create 9lives password", "A name is 2 to 20")
    again.command("create Dave 1234567", "A password needs at least 8 characters.")
    again.command("connect Carol wrong-pw", "Wrong name or password.")
    again.command("look", "You are not logged in yet")
    again.login("Carol", "carol-pw", create=False)
    again.command("look", "The Demo Room")


def test_failed_logins_are_counted_per_address_whatever_the_connection(server, admin, clients):
    clients("Frank")
    here = address()
    for guess in range(FREE_FAILURES):
        # A new connection each time: hanging up does not reset the count.
        clients(source=here).command(f"connect Frank guess-{guess}", "Wrong name or password.")
    _refused_soon(clients, here, "Frank")
    _refused_soon(clients, here, "Nobody")   # any name, from that address
    # Another address may still try another name.
    clients().command("connect Carol guess-z", "Wrong name or password.")


def test_failed_logins_are_counted_per_name_whatever_the_address(server, admin, clients):
    clients("Grace")
    for guess in range(FREE_FAILURES):
        clients().command(f"connect Grace guess-{guess}", "Wrong name or password.")
    _refused_soon(clients, None, "grace")
    clients().command("connect Carol guess-y", "Wrong name or password.")


def _refused_soon(clients, source, name):
    """Guess ``name``'s password (a new connection each time) until told to wait. The wait
    runs from the last failure and doubles with each: on a busy machine, a guess may come after
    the first wait is over (and counts), but not after the next ones."""
    for guess in range(6):
        answer = clients(source=source).command(
            f"connect {name} more-{guess}",
            r"Wrong name or password\.|Too many failed logins: wait \d+ s").group(0)
        if answer.startswith("Too many"):
            return
    raise AssertionError(f"guesses of {name!r} from {source} were never slowed down")


def test_accounts_asked_for_from_one_address_are_limited(server, admin, clients):
    here = address()
    for number in range(CREATES_PER_ADDRESS - 1):
        clients(f"Maker{number}", source=here)
    # A taken name counts too (else create would probe names for free).
    clients(source=here).command("create Carol whatever", "is not available")
    clients(source=here).command("create Maker99 password1",
                                 r"Too many accounts were asked for from your address: wait "
                                 r"\d+ min")
    clients().login("Maker99", "password1")  # from elsewhere, the name is free


def test_connections_from_one_address_are_limited(server, admin, clients):
    here = address()
    held = [clients(source=here) for _ in range(MAX_PER_ADDRESS)]
    refused = Client(server.port, source=here)
    refused.expect(re.escape(f"Too many connections from your address ({MAX_PER_ADDRESS}); "
                             "close one and try again."))
    refused.wait_closed()
    held.pop().close()
    wait_for(lambda: _accepted(server, here), what="a connection to be accepted again")
    # The address given to --exempt-address is not limited.
    exempt = [clients(source=EXEMPT) for _ in range(MAX_PER_ADDRESS + 2)]
    exempt[-1].command("look", "You are not logged in yet")


def _accepted(server, source):
    client = Client(server.port, source=source)
    try:
        client.expect(r"create <name> <password>|Too many connections")
        return "create <name>" in client.text
    finally:
        client.close()


# -- several players at once -----------------------------------------------------------------

LONG = ("py exec(\"def func(self):\\n  self.msg('You start a long count.')\\n  yield 36000\\n"
        "  self.msg('You finish the long count.')\", globals()); "
        "Long = type('CmdLong', (evasync.Command,), {'key': 'longcount', 'func': func}); "
        "Set = type('LongSet', (evasync.CmdSet,), {'at_cmdset_creation': lambda s: s.add(Long)}); "
        "evasync.search_object('Slowpoke')[0].cmdset.add(Set, persistent=False)")


def test_a_long_command_does_not_hold_up_another_player(server, admin, clients):
    slow, quick = clients("Slowpoke"), clients("Quick")
    admin.command(LONG, r"<<< None")
    slow.command("longcount", "You start a long count.")  # ten game hours: a real hour
    for direction in ("north", "south", "east", "west"):
        quick.command(direction, f"You walk {direction}")
    slow.command("look", "The Demo Room")  # its own player too, while the command waits
    slow.absent("You finish the long count.", within=0.1)


def test_say_who_look(server, admin, clients):
    ann, ben = clients("Ann"), clients("Ben")
    ann.command("say hello there", 'You say, "hello there"')
    ben.expect('Ann says, "hello there"')
    admin.expect('Ann says, "hello there"')
    ben.command("who", r"Connected \(\d+\): .*Ann.*Ben")
    ann.command("look", r"Here with you: .*Ben")
    listing = ann.command("help", r"Available commands:(.|\n)*?Type 'help <command>'").group(0)
    assert all(f"  {name} " in listing for name in ("bigswing", "brew", "say", "who", "quit"))
    assert "  py " not in listing and "  reload " not in listing  # the superuser's only


# -- py --------------------------------------------------------------------------------------

def test_py_runs_in_the_game_with_self_and_me(server, admin):
    admin.command("py me is self and self.key", r"<<< 'Admin'")
    admin.command("py print('printed'); 6 * 7", r"printed\n<<< 42")
    admin.command("py 1/0", r"Traceback(.|\n)*ZeroDivisionError: division by zero")
    admin.command("py def (", "SyntaxError")
    admin.command("py raise SystemExit(3)", "SystemExit: 3")
    admin.command("look", "The Demo Room")


def test_the_one_liner_of_the_docs_schedules_a_message(server, admin):
    one_liner = 'py from evasync import delay; delay(5, me.msg, "A raven lands on your shoulder.")'
    suggested_by = [(ROOT / "README.md").read_text(), CmdPy.__doc__,
                    (ROOT / "docs" / "howtos" / "demo-server.md").read_text()]
    assert all(one_liner in text for text in suggested_by)
    admin.command(one_liner, r"<<< <Task \d+ \w+\.msg scheduled>")
    admin.expect("A raven lands on your shoulder.")
    # The demo-server page says every py line is in the log.
    wait_for(lambda: one_liner[3:] in server.log(), what="the py line in evasync.log")


def test_the_one_liner_of_evennias_docs_works_with_evasyncs_import(server, admin):
    # Evennia users will type it; only the module in its import differs.
    admin.command('py from evasync import delay; delay(10, lambda who: who.msg("Test!"), self)',
                  r"<<< <Task \d+ <lambda> scheduled>")
    admin.expect("Test!")


def test_py_is_refused_to_others(server, admin, clients):
    eve = clients("Eve")
    eve.command("py self.db.superuser = True", "Permission denied: you are not allowed to use 'py'")
    eve.command("reload", "Permission denied: you are not allowed to use 'reload'")
    admin.command("py evasync.search_object('Eve')[0].db.superuser", "<<< None")


# -- robustness ------------------------------------------------------------------------------

BOOM = ("py from evasync import Command, CmdSet; "
        "Boom = type('CmdBoom', (Command,), {'key': 'boom', 'func': lambda self: 1 / 0}); "
        "Set = type('BoomSet', (CmdSet,), {'at_cmdset_creation': lambda s: s.add(Boom)}); "
        "self.cmdset.add(Set, persistent=False)")


def test_an_exception_in_a_command_disconnects_nobody(server, admin, clients):
    other = clients("Bystander")
    admin.command(BOOM, r"<<< None")
    admin.command("boom", r"Sorry, 'boom' failed with an error \(ZeroDivisionError\)")
    admin.command("py evasync.delay(0.5, lambda: 1 / 0)", "<<< <Task")
    admin.command("wait", "You start counting")
    admin.expect("... ten.")
    admin.command("look", "The Demo Room")
    other.command("look", "The Demo Room")
    assert "ZeroDivisionError" in server.log()


def test_overlong_lines_are_cut_with_a_message(server, admin, clients):
    talker = clients("Talker")
    talker.send("say " + "x" * (MAX_LINE * 5))
    talker.expect(f"only its first {MAX_LINE} bytes were used")
    said = talker.expect(r'You say, "(x+)"')
    assert len(said.group(1)) == MAX_LINE - len("say ")
    talker.command("north", "You walk north")


def test_binary_junk_and_stray_telnet_sequences_are_ignored(server, admin, clients):
    junk = clients("Junk")
    junk.send(b"\x00\x01\x02\xfe\xfd\x80\x81\xc3\x28\x1b[2J"
              b"\xff\x01"          # IAC followed by a byte that is no command
              b"\xff\xfb\x05"      # WILL STATUS: refused
              b"\xff\xfd\x2a"      # DO CHARSET: refused
              b"\xff\xf1\xff\xf6"  # NOP, AYT
              b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0"  # a window size
              b"\r\n")
    junk.send(b"\xff\xff s\xc3\xa4y caf\xc3\xa9\r\0\r\n")  # an escaped 255, CR NUL, UTF-8
    junk.send("north")
    junk.expect("You walk north")
    junk.command("say naïve", 'You say, "naïve"')


def test_a_flooding_client_is_slowed_down_and_others_are_served_meanwhile(server, clients):
    flooder, calm = clients("Flooder"), clients("Calm")
    flooder.send(b"north\r\n" * 3000)        # 150 s of lines at 20 a second
    flooder.expect("your input is slowed down")
    for _ in range(5):
        calm.command("south", "You walk south")
    flooder.expect("You walk north")
    assert flooder.text.count("You walk north") < 3000  # still being worked through
    assert not flooder.closed
    # How long the others wait meanwhile is measured by bench/bench_hostile.py.


def test_a_flood_of_telnet_commands_does_not_keep_others_waiting(server, clients):
    flooder, calm = clients("NopFlooder"), clients("Calm2")
    sent = []
    sender = threading.Thread(target=_flood, args=(flooder.sock, sent), daemon=True)
    sender.start()
    wait_for(lambda: sum(sent) >= 1 << 20, what="a MiB of the flood to be sent")
    for _ in range(7):
        calm.command("south", "You walk south")   # while IAC NOPs keep coming
    assert sender.is_alive()
    flooder.sock.shutdown(socket.SHUT_RDWR)  # wakes the sender (close alone might not)
    sender.join(TIMEOUT)


def _flood(sock, sent):
    nops = bytes([255, 241]) * 32_768  # 64 KiB of IAC NOP: telnet commands, no lines
    try:
        while True:
            sock.sendall(nops)
            sent.append(len(nops))
    except OSError:
        pass


def test_a_dropped_connection_closes_its_waiting_questions(server, admin, clients):
    quitter = clients("Quitter")
    admin.command("py exec(\"def ask(caller):\\n  yield 'Do you agree?'\", globals()); "
                  "q = evasync.search_object('Quitter')[0]; runtime.driver.run(ask(q), q); "
                  "runtime.driver.is_asking(q)", "<<< True")
    quitter.expect("Do you agree?")
    quitter.close()
    # The hang-up and admin's next line reach the portal on two sockets, in either order:
    # ask until the game has seen the hang-up (it said True before, and then only False).
    asking = "py runtime.driver.is_asking(evasync.search_object('Quitter')[0])"
    wait_for(lambda: admin.command(asking, r"<<< (True|False)").group(1) == "False",
             what="the question to be closed")


def test_a_player_who_stops_reading_is_hung_up_on(server, admin, clients):
    flood_until_hung_up(admin, clients("Deaf"), "Deaf")
    assert "<TelnetSession" in server.log() and "not reading its output; hanging up" in server.log()


def test_every_howto_is_playable_questions_and_their_timeouts_included(server, clients):
    trader = clients("Trader")
    trader.command("sell old map", r"offers 21 gold for old map\. Deal\? \(yes/no\)")
    trader.command("yes", "You sell old map for 21 gold.")
    trader.command("quicksell lucky coin", "Deal")
    trader.expect("You keep lucky coin.")            # 15 game seconds, no answer: the default
    trader.command("powerattack dummy", "You unleash a power attack on dummy!")
    trader.command("pa dummy", "still gathering strength")
    trader.command("chart 3 = 50", "You lie back")
    trader.expect(r"You make out \d+ constellation lines")   # computed in a worker process


def test_a_message_longer_than_one_amp_box_reaches_the_player_unbroken():
    from evasync.server.portal import Portal
    from evasync.server.protocol import BOX_CHARS, Events, Outbox, ToPortal
    from ._server_support import FakePortal

    sent = []

    class Link:
        def callRemote(self, command, events):
            wire = Events()  # what AMP would send and the other side read
            sent.extend(wire.fromString(wire.toString(events)))

    clock = Clock()
    outbox = Outbox(clock, ToPortal, lambda: Link())
    text = "x" * (2 * BOX_CHARS + 5)
    outbox.put("send", 1, text)
    clock.advance(0)
    assert len(sent) == 3                      # it did need several boxes

    portal = FakePortal()
    wire, screen = portal.connect()
    screen.clear()
    Portal.from_game(portal, sent)
    assert screen.value().decode().replace("\r\n", "\n") == text + "\n"


def test_the_log_and_the_run_folder_are_private(server):
    assert os.stat(server.rundir.logfile).st_mode & 0o777 == 0o600
    assert os.stat(server.rundir.path).st_mode & 0o777 == 0o700
