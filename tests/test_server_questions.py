"""On the demo server, a waiting question takes the next line, except `quit` (and `reload`)."""

from __future__ import annotations

from ._server_support import Server


def test_quit_quits_even_while_a_question_waits(tmp_path):
    server = Server(tmp_path).start()
    try:
        player = server.client("Quinn", password="correct-horse")
        player.command("sell rusty dagger", r"Deal\? \(yes/no\)")
        player.command("quit", "Goodbye!")
        player.wait_closed()
        again = server.client("Quinn", password="correct-horse", create=False)
        again.command("look", "The Demo Room")   # nothing from before is still waiting
        again.close()
    finally:
        server.close()
