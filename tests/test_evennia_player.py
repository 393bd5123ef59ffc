"""Transcripts played elsewhere: ``ProcessPlayer``, and the Evennia game behind it.

The Evennia tests need ``.venv-evennia`` (``make test`` builds it); they fail, not skip, without.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import textwrap

import pytest

from evasync.transcript import ProcessPlayer, TranscriptError, check, run

ROOT = pathlib.Path(__file__).resolve().parent.parent
DURATION = "howtos.command_duration.CommandDurationCmdSet"
QUESTIONS = "howtos.questions.QuestionsCmdSet"


def _module(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evennia():
    """The docs' Evennia player (one process for this module's tests)."""
    player = _module("docs_conftest_for_evennia", ROOT / "docs" / "conftest.py").EVENNIA
    yield player
    player.close()


# -- porting a howto's imports (no Evennia needed) ----------------------------------------------

def test_imports_are_ported_name_by_name_and_names_evennia_lacks_are_dropped():
    import ast

    porting = _module("evennia_player", ROOT / "tests" / "evennia" / "player.py")
    tree, dropped = porting.port_imports(
        "from evasync import TASK_HANDLER, CmdSet, ask, delay as later, now\n"
        "from evasync import returnValue\nimport math\n", "example.py")
    assert ast.unparse(tree).splitlines() == [
        "from evennia.scripts.taskhandler import TASK_HANDLER",
        "from evennia import CmdSet",
        "from evennia.utils.utils import delay as later",
        "from twisted.internet.defer import returnValue",
        "import math",
    ]
    assert dropped == ["ask", "now"]


def test_an_evasync_submodule_import_is_refused_when_porting():
    porting = _module("evennia_player", ROOT / "tests" / "evennia" / "player.py")
    with pytest.raises(ImportError, match="example.py:1: 'from evasync.testing import'"):
        porting.port_imports("from evasync.testing import VirtualRuntime\n", "example.py")


# -- ProcessPlayer's protocol, with a stand-in process ------------------------------------------

ECHO_PLAYER = textwrap.dedent("""\
    import json, sys
    for line in sys.stdin:
        request = json.loads(line)
        if request["players"] == ["Crash"]:
            sys.exit("the stand-in player gives up")
        if request["players"] == ["Broken"]:
            print(json.dumps({"error": "no such command set"}), flush=True)
            continue
        seen = [[[s["player"], "saw " + s["text"]]] for s in request["steps"]]
        print(json.dumps({"seen": seen, "log": ["a warning"]}), flush=True)
    """)


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(ECHO_PLAYER)
    player = ProcessPlayer([sys.executable, str(script)], name="stand-in", timeout=60)
    yield player
    player.close()


def test_a_process_player_gets_the_steps_and_its_answer_is_written_as_a_transcript(stand_in):
    played = run("> wait\n... 2 seconds pass ...\n... the server reloads ...\n", [DURATION],
                 player=stand_in)
    assert played.splitlines() == [
        "> wait", "saw wait", "... 2 seconds pass ...", "saw ... 2 seconds pass ...",
        "... the server reloads ...", "saw ... the server reloads ..."]
    assert stand_in.last_log == ["a warning"]


def test_a_mismatch_names_the_player_and_quotes_its_log(stand_in):
    with pytest.raises(TranscriptError) as caught:
        check("> wait\nsaw nothing\n", [DURATION], player=stand_in)
    message = str(caught.value)
    assert "+++ as played on stand-in" in message
    assert "-saw nothing" in message and "+saw wait" in message
    assert "stand-in logged:\na warning" in message


def test_an_error_the_player_reports_fails_the_transcript(stand_in):
    with pytest.raises(TranscriptError, match="stand-in could not play the transcript:\n"
                                              "no such command set"):
        run("Broken> wait\n", [DURATION], player=stand_in)


def test_a_player_that_dies_fails_with_its_last_words(stand_in):
    with pytest.raises(TranscriptError, match="(?s)has exited.*the stand-in player gives up"):
        run("Crash> wait\n", [DURATION], player=stand_in)


def test_a_player_that_never_answers_is_ended_after_its_timeout(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import sys, time\nsys.stdin.readline()\ntime.sleep(600)\n")
    player = ProcessPlayer([sys.executable, str(script)], name="silent", startup_timeout=1)
    try:
        with pytest.raises(TranscriptError, match="did not answer in time"):
            run("> wait\n", [DURATION], player=player)
        assert player._process is None  # ended, not left running
    finally:
        player.close()


def test_a_player_that_cannot_start_says_which_command_failed(tmp_path):
    player = ProcessPlayer([str(tmp_path / "no-such-python")], name="missing")
    with pytest.raises(TranscriptError, match="could not start the missing player"):
        run("> wait\n", [DURATION], player=player)


# -- the real Evennia ---------------------------------------------------------------------------

def test_evennia_plays_a_portable_transcript(evennia):
    check("""
        > bigswing troll
        You put all your weight into a swing at troll and stumble off balance.
        > bigswing troll
        You are still staggering from your last swing!
        ... 8 seconds pass ...
        You find your footing again.
        """.replace("\n        ", "\n"), [DURATION], player=evennia)


def test_evennia_catches_a_transcript_that_is_wrong_there(evennia):
    with pytest.raises(TranscriptError) as caught:
        check("> wait\nYou start counting to five...\n", [DURATION], player=evennia)
    assert "+You start counting to ten..." in str(caught.value)


def test_evasync_only_code_fails_on_evennia_as_it_would_in_a_ported_game(evennia):
    # quicksell uses ask(), which Evennia lacks: the ported module has no such name.
    with pytest.raises(TranscriptError) as caught:
        check("> quicksell lucky coin\n"
              "The shopkeeper offers 30 gold for lucky coin. Deal? (yes/no)\n"
              "... 15 seconds pass ...\nYou keep lucky coin.\n", [QUESTIONS], player=evennia)
    message = str(caught.value)
    assert "NameError: name 'ask' is not defined" in message
    assert "(ported howtos.questions without ask: not in Evennia)" in message


def test_an_evennia_reload_drops_what_lives_in_memory_and_keeps_persistent_tasks(evennia):
    # After the reload ndb.off_balance is gone (a new swing is allowed), the order (a plain
    # delay) never comes, and the persistent brew still finishes.
    check("""
        > bigswing troll
        You put all your weight into a swing at troll and stumble off balance.
        > brew tea
        You set a cauldron of tea to simmer. It will be ready in a minute.
        > order stew
        You order stew. The cook disappears into the kitchen.
        ... the server reloads ...
        > bigswing troll
        You put all your weight into a swing at troll and stumble off balance.
        ... 60 seconds pass ...
        You find your footing again.
        Your tea is ready!
        """.replace("\n        ", "\n"), [DURATION], player=evennia)


def test_blocks_marked_evasync_only_are_left_out_for_another_player(tmp_path, stand_in):
    from sybil import Sybil

    from evasync.transcript import TranscriptParser

    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent(f"""\
        ```{{transcript}}
        :cmdset: {DURATION}

        > wait
        saw wait
        ```

        ```{{transcript}}
        :cmdset: {DURATION}
        :evasync-only:

        > wait
        You start counting to ten...
        ```
        """))
    elsewhere = list(Sybil([TranscriptParser(player=stand_in)], path=str(tmp_path)).parse(page))
    here = list(Sybil([TranscriptParser()], path=str(tmp_path)).parse(page))
    assert [example.line for example in elsewhere] == [1]
    assert [example.line for example in here] == [1, 8]
    elsewhere[0].evaluate()          # played by the stand-in, which "saw wait"
    here[1].evaluate()               # the evasync-only block still runs on evasync
