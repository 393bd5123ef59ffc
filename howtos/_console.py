"""Play a howto in your terminal, in real time, as one player (Ctrl-D leaves)."""

from __future__ import annotations

import argparse
import os
import sys

from twisted.internet import stdio
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from evasync import CmdSet, Command, create_object, get_runtime, search_object

PLAYER_KEY = "Player"


class CmdReload(Command):
    """
    Reload the game, as a server reload would.

    Usage:
      reload

    Non-persistent delays and paused commands are gone afterwards;
    persistent delays fire at their time.
    """

    key = "reload"
    runs_during_questions = True

    def func(self):
        self.msg("Reloading ...")
        runtime = get_runtime()
        sessions = list(self.caller.sessions)
        howto_sets = [type(s) for s in self.caller.cmdset.all()]
        loaded = runtime.reload()
        player = runtime.objects.get(self.caller.id)
        for cmdset in howto_sets:  # added for this run only, so gone with the old instance
            player.cmdset.add(cmdset, persistent=False)
        player.sessions.extend(sessions)
        player.msg(f"... reloaded ({loaded} persistent task(s) restored).")


@implementer(IHalfCloseableProtocol)
class _Terminal(LineReceiver):
    delimiter = os.linesep.encode()

    def __init__(self, player_id: int) -> None:
        self.player_id = player_id

    def send(self, text: str) -> None:
        self.transport.write(text.encode() + b"\n")

    def connectionMade(self) -> None:
        player = get_runtime().objects.get(self.player_id)
        player.sessions.append(self)
        player.msg("Welcome! Type 'help' for the commands, Ctrl-D to leave.")

    def lineReceived(self, line: bytes) -> None:
        player = get_runtime().objects.get(self.player_id)
        player.execute_cmd(line.decode(errors="replace"), session=self)

    def readConnectionLost(self) -> None:
        # Ctrl-D (or the end of piped input): let what is still being written reach the screen.
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason: object = None) -> None:
        runtime = get_runtime()
        runtime.disconnect(runtime.objects.get(self.player_id), self)
        if runtime.reactor.running:
            runtime.reactor.stop()


def play(cmdset: type, argv: list[str] | None = None) -> int:
    """Run the terminal game with ``cmdset`` on the player's character."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="store file (default: $EVASYNC_DB or evasync.db)")
    options = parser.parse_args(argv)
    if options.db:
        os.environ["EVASYNC_DB"] = options.db
    runtime = get_runtime()
    found = search_object(PLAYER_KEY)
    player = found[0] if found else create_object(key=PLAYER_KEY)
    # Only this howto's commands, for this run: another howto played with the same store
    # brings its own.
    player.cmdset.add(cmdset, persistent=False)
    player.cmdset.add(_ConsoleCmdSet, persistent=False)
    runtime.tasks.load()
    stdio.StandardIO(_Terminal(player.id))
    runtime.reactor.run()
    runtime.close()
    return 0


class _ConsoleCmdSet(CmdSet):
    key = "console"

    def at_cmdset_creation(self) -> None:
        self.add(CmdReload)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run a howto instead, e.g. python -m howtos.command_duration")
