"""Reloads and crashes of the demo server: players stay connected, persistent delays still fire.

Game time runs ten times faster: ``brew`` (a persistent delay of a minute) takes six seconds,
``wait`` (a ten-second pause) and ``echo`` (a ten-second delay) one second.
"""

from __future__ import annotations

import os
import signal

import pytest

from ._server_support import Server, evasync, wait_for


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path).start()
    yield server
    server.close()


def test_reload_mid_delay_keeps_every_connection_and_the_persistent_delay(server):
    alice, bob, guest = server.client("Alice"), server.client("Bob"), server.client()
    old_game = server.game_pid
    alice.command("brew tea", "You set a cauldron of tea to simmer")
    bob.command("wait", "You start counting to ten")
    bob.command("order stew", "You order stew. The cook disappears")

    alice.command("reload", "The server is reloading; you stay connected")
    for client in (alice, bob, guest):
        client.expect(r"\.\.\. the server has been reloaded \(1 persistent task restored\)\.")
    assert server.wait_ready(generation=2)["game_pid"] != old_game

    alice.command("look", "The Demo Room")        # still logged in, no new login needed
    bob.command("who", r"Connected \(2\): Alice, Bob")
    guest.login("Guest")                           # the not-yet-logged-in one too
    alice.expect("Your tea is ready!")
    bob.absent("... ten.", within=0.2)             # pauses and plain delays are gone
    bob.absent("The cook brings", within=0.2)
    assert server.tasks() == []


def test_lines_typed_during_a_reload_are_answered_after_it(server):
    alice = server.client("Alice")
    alice.command("reload", "The server is reloading")
    alice.send("north")  # held by the portal until the new game process is ready
    alice.expect("the server has been reloaded")
    alice.expect("You walk north")


def test_evasync_reload_from_the_command_line(server):
    alice = server.client("Alice")
    result = evasync("reload", db=server.db)
    assert result.returncode == 0, result.stderr
    assert "evasync reloaded" in result.stdout
    alice.expect("The server is reloading")
    alice.expect("the server has been reloaded")
    assert server.state()["generation"] == 2
    alice.command("look", "The Demo Room")


def test_sigkill_of_the_game_process_loses_no_persistent_task(server):
    alice, bob = server.client("Alice"), server.client("Bob")
    alice.command("brew tea", "You set a cauldron")
    assert len(server.tasks()) == 1

    os.kill(server.game_pid, signal.SIGKILL)
    alice.expect("The game stopped unexpectedly and is being restarted")
    alice.expect(r"\.\.\. the game is back \(1 persistent task restored\)\.")
    server.wait_ready(generation=2)
    # Alice stayed connected, so she hears it, at its time or (if the restart took longer on
    # a busy machine) as soon as the new game process has loaded it.
    alice.expect("Your tea is ready!")
    wait_for(lambda: server.tasks() == [], what="the tea's task to be done")

    # Now the whole server dies (game process and portal), and is started again.
    bob.command("brew coffee", "You set a cauldron")
    server.kill()
    assert len(server.tasks()) == 1                # still stored
    server.start()
    # The task fires once the new game process has loaded it, perhaps before Bob is back
    # (then nobody hears it): what shows it ran is its effect, kept in the store.
    wait_for(lambda: server.tasks() == [], what="the coffee's task to be done")
    alice = server.client("Alice", create=False)   # the superuser
    alice.command("py evasync.search_object('Bob')[0].db.brewing", "<<< None")


def test_a_graceful_stop_says_goodbye_and_keeps_the_persistent_delays(server):
    alice = server.client("Alice")
    alice.command("brew tea", "You set a cauldron")
    assert server.stop() == 0
    alice.expect("The server is shutting down. Goodbye!")
    alice.wait_closed()
    assert len(server.tasks()) == 1
    assert "Traceback" not in server.log()
    assert not os.path.exists(server.rundir.pidfile)


def test_the_command_line_daemon(tmp_path):
    db = tmp_path / "evasync.db"
    started = evasync("start", "--port", "0", "--speed", "10", db=db)
    try:
        assert started.returncode == 0, started.stderr
        assert "evasync started: telnet 127.0.0.1:" in started.stdout
        status = evasync("status", db=db)
        assert status.returncode == 0 and "evasync is running (ready)" in status.stdout
        again = evasync("start", "--port", "0", db=db)
        assert again.returncode == 1 and "already running" in again.stderr

        server = Server(tmp_path)
        client = server.client("Alice")
        assert evasync("reload", db=db).returncode == 0
        client.expect("the server has been reloaded")
        client.command("look", "The Demo Room")
        stopped = evasync("stop", db=db)
        assert stopped.returncode == 0 and "evasync stopped." in stopped.stdout
        client.expect("Goodbye!")
        client.wait_closed()
    finally:
        evasync("stop", db=db)
    status = evasync("status", db=db)
    assert status.returncode == 3 and "not running" in status.stdout
    assert (tmp_path / "evasync.log").read_text().count("portal stopped") == 1


def test_a_corrupted_store_stops_start_up_with_the_file_named_and_untouched(tmp_path):
    db = tmp_path / "evasync.db"
    junk = bytes(range(256)) * 20
    db.write_bytes(junk)
    done = evasync("start", "--port", "0", db=db)
    assert done.returncode == 1
    assert "is unreadable or corrupted" in done.stderr and str(db) in done.stderr
    assert db.read_bytes() == junk
    # No restart loop behind it: one game process was tried, and the server is not running.
    log = (tmp_path / "evasync.log").read_text()
    assert log.count("started game process") == 1
    assert evasync("status", db=db).returncode == 3


def test_a_link_to_the_store_finds_the_server_already_running_on_it(server, tmp_path):
    link = tmp_path / "elsewhere" / "link.db"
    link.parent.mkdir()
    link.symlink_to(server.db)
    again = evasync("start", "--port", "0", db=link)
    try:
        assert again.returncode == 1, again.stdout
        assert f"already running (pid {server.process.pid})" in again.stderr
    finally:
        if again.returncode == 0:
            evasync("stop", db=link)
