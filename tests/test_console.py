"""The terminal player of the howtos, run as a reader would: ``python -m howtos.<name>``."""

import subprocess
import sys


def play(module, lines, db):
    done = subprocess.run([sys.executable, "-m", module, "--db", str(db)], input="\n".join(lines)
                          + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_reload_works_every_time_and_keeps_the_persistent_brew(tmp_path):
    out = play("howtos.command_duration", ["brew tea", "reload", "reload", "brew more"],
               tmp_path / "play.db")
    assert out.count("... reloaded (1 persistent task(s) restored).") == 2
    assert out[-1] == "Your tea is still bubbling."


def test_each_howto_brings_only_its_own_commands_to_a_shared_store(tmp_path):
    db = tmp_path / "play.db"
    play("howtos.command_duration", ["help"], db)
    listed = [line.split()[0] for line in play("howtos.questions", ["help"], db)
              if line.startswith("  ")]
    assert listed == ["help", "quicksell", "reload", "rest", "sell"]


def test_the_async_forge_plays_in_a_terminal(tmp_path):
    out = play("howtos.forge", ["forge a nail"], tmp_path / "play.db")
    assert "You put the iron for a nail in the fire." in out
