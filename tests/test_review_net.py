"""Hostile review of the demo server from outside (loopback only): each test is a bug found."""

from __future__ import annotations

import pytest

from evasync.server.game import FREE_FAILURES
from evasync.server.portal import MAX_PER_ADDRESS
from evasync.server.session import clean

from ._server_support import Server, address, made_clients


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("review-net")).start()
    yield server
    server.close()


@pytest.fixture
def clients(server):
    with made_clients(server) as make:
        yield make


ANSWER = r"Wrong name or password\.|Too many failed logins: wait \d+ s|being checked"


def test_guesses_sent_at_once_from_one_address_meet_the_backoff(server, clients):
    """The backoff counts a wrong password once it has been checked: guesses sent on many
    connections at once were all checked, before the first failure was counted."""
    clients("Victim")
    here = address()
    guessers = [clients(source=here) for _ in range(MAX_PER_ADDRESS - 2)]
    for number, guesser in enumerate(guessers):
        guesser.send(f"connect Victim guess-{number}")
    answers = [guesser.expect(ANSWER).group(0) for guesser in guessers]
    checked = [answer for answer in answers if answer.startswith("Wrong")]
    # The first wait (2 s) may be over before a late guess on a busy machine: one more.
    assert len(checked) <= FREE_FAILURES + 1, answers


def test_invisible_direction_and_spacing_characters_are_dropped_from_input():
    # U+202E would show a line backwards to everyone else; U+200B, U+2028 and U+FEFF hide in
    # or break it. The marks and joiners real scripts need stay.
    line = "say h\u200bi \u202eedoc\u202c\u2066x\u2069\u2028y\ufeff"
    assert clean(line.encode()) == "say hi edocxy"
    assert clean("\u0645\u06cc\u200c\u062e\u0648\u0627\u0645 \u200f".encode()) == \
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645 \u200f"


class _Outbox:
    """Records what the game sends, instead of sending it to a portal."""

    def __init__(self):
        self.events = []

    def put(self, *event):
        self.events.append(event)

    def flush(self):
        pass


@pytest.mark.parametrize("word", ["create", "connect"])
def test_a_login_still_being_checked_when_the_game_stops_is_answered(word):
    # A reload (or a stop) while the password is hashed dropped the answer: the player, told
    # nothing, waited for a reply that never came.
    from twisted.internet import defer

    from evasync.server.game import UNFINISHED, Game
    from evasync.testing import VirtualRuntime

    game = Game(VirtualRuntime())
    game.outbox = outbox = _Outbox()
    checks = []
    game.accounts._pool.run = lambda func, *args: checks.append(defer.Deferred()) or checks[-1]
    game.connect(7, "127.0.0.1:5000")
    game.connect(8, "127.0.0.1:5001")             # idle: told nothing
    game.input(7, f"{word} Bob a-long-password")
    assert len(checks) == 1 and game.sessions[7].busy == word
    del outbox.events[:]
    game.shutdown("reload")
    assert outbox.events == [("send", 7, UNFINISHED.format(word=word))]
    checks[0].callback("x" if word == "create" else True)  # the answer, after the stop
    assert outbox.events == [("send", 7, UNFINISHED.format(word=word))]
