"""The demo server with a damaged or shared store: no crash loop, no second owner."""

from __future__ import annotations

import json
import sqlite3

from ._server_support import Server, evasync


def test_a_bad_task_row_is_quarantined_and_the_game_stays_up(tmp_path):
    server = Server(tmp_path).start()
    try:
        callback = json.dumps({"path": "howtos.command_duration:finish_brew"})
        with sqlite3.connect(server.db) as conn:   # SQLite takes text in a REAL column
            conn.execute("INSERT INTO tasks VALUES (7, 'soon', 'scheduled', ?, '[]', '{\"d\":[]}')",
                         (callback,))
        reloaded = evasync("reload", db=server.db)
        assert reloaded.returncode == 0, reloaded.stderr
        server.wait_ready(generation=2)
        status = evasync("status", db=server.db)
        assert status.returncode == 0
        assert "1 stored task(s) could not be restored" in status.stdout
        client = server.client("Ada", password="correct-horse")
        client.command("look", "The Demo Room")
        client.close()
        assert server.state()["generation"] == 2          # no crash, no restart after it
        assert "stored task 7 cannot be restored" in server.log()
    finally:
        server.close()


def test_a_second_server_on_a_symlink_to_the_store_is_refused(tmp_path):
    server = Server(tmp_path).start()
    try:
        link = tmp_path / "other.db"
        link.symlink_to(server.db)
        second = evasync("start", "--port", "0", db=link)
        assert second.returncode != 0
        assert "already running" in second.stderr or "in use by process" in second.stderr
    finally:
        server.close()
