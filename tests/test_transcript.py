"""Game transcripts, and the docs check that no code block goes unrun."""

import importlib.util
import pathlib
import textwrap

import pytest
from sybil import Sybil

from evasync.transcript import Step, TranscriptError, check, parse, run

CMDSET = "howtos.command_duration.CommandDurationCmdSet"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_parse_reads_inputs_waits_reloads_and_output():
    steps = parse(textwrap.dedent("""\
        > wait
        You start counting to ten...
        ... 1.5 seconds pass ...
        Bob> toll 2
        ... 2 minutes pass ...
        ... the server reloads ...
        BONG (1 of 2)
        """))
    assert steps == [
        Step("input", "wait"),
        Step("output", "You start counting to ten..."),
        Step("wait", "... 1.5 seconds pass ...", seconds=1.5),
        Step("input", "toll 2", player="Bob"),
        Step("wait", "... 2 minutes pass ...", seconds=120.0),
        Step("reload", "... the server reloads ..."),
        Step("output", "BONG (1 of 2)"),
    ]


def test_run_writes_what_really_happened_in_transcript_form():
    played = run("> wait\n... 10 seconds pass ...\n", [CMDSET])
    assert played.splitlines() == [
        "> wait", "You start counting to ten...", "... 10 seconds pass ...",
        "... ten. You stop counting."]


def test_several_players_get_name_prefixes_and_do_not_wait_for_each_other():
    played = run("Anna> wait\nBob> toll 1\n... 3 seconds pass ...\n", [CMDSET])
    assert played.splitlines() == [
        "Anna> wait", "[Anna] You start counting to ten...",
        "Bob> toll 1", "[Bob] You grip the bell rope and pull.",
        "... 3 seconds pass ...", "[Bob] BONG (1 of 1)",
        "[Bob] The last stroke hums away over the rooftops."]


def test_a_wrong_line_fails_with_a_diff():
    with pytest.raises(TranscriptError) as caught:
        check("> wait\nYou start counting to five...\n", [CMDSET])
    message = str(caught.value)
    assert "-You start counting to five..." in message
    assert "+You start counting to ten..." in message


def test_a_missing_line_fails_too():
    with pytest.raises(TranscriptError):
        check("> wait\n... 10 seconds pass ...\n", [CMDSET])


def _docs_sybil():
    spec = importlib.util.spec_from_file_location("docs_conftest", ROOT / "docs" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate_all(tmp_path, text):
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent(text))
    conf = _docs_sybil()
    sybil = Sybil(parsers=[conf.PythonCodeBlockParser(), conf.TranscriptParser(),
                           conf.ConsoleParser(), conf.UnrunBlockParser(), conf.SkipParser()],
                  path=str(tmp_path))
    document = sybil.parse(page)
    outcomes = []
    for example in document:
        try:
            example.evaluate()
            outcomes.append("ok")
        except Exception as exc:  # collected: the test checks which failed
            outcomes.append(f"{type(exc).__name__}: {exc}")
    return outcomes


def test_docs_check_fails_a_block_nothing_runs(tmp_path):
    outcomes = _evaluate_all(tmp_path, """\
        ```python
        x = 1
        ```

        ```text
        not run by anything
        ```
        """)
    assert outcomes[0] == "ok"
    assert "is not run by any test" in outcomes[1]


def test_docs_check_accepts_a_skip_with_a_reason(tmp_path):
    outcomes = _evaluate_all(tmp_path, """\
        % skip: next "shows output of a real terminal"

        ```text
        not run by anything
        ```
        """)
    # The skip directive itself evaluates fine; the block after it is skipped, not failed.
    assert outcomes[0] == "ok"
    assert outcomes[1].startswith("SkipTest: shows output of a real terminal"), outcomes


def test_console_blocks_must_name_real_make_targets(tmp_path):
    outcomes = _evaluate_all(tmp_path, """\
        ```console
        $ make html
        ```

        ```console
        $ make publish
        ```
        """)
    assert outcomes[0] == "ok"
    assert "no such Makefile target ['publish']" in outcomes[1]
