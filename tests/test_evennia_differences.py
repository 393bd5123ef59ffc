"""Each row of "Coming from Evennia, going to Evennia" (docs/concepts/async-processes.md), tested.

Every test checks both sides: what a real Evennia does (observed by ``tests/evennia/facts.py``
in ``.venv-evennia``, once for the module) and what evasync does, and where the page offers a
portable way, that it works here too (the howto transcripts prove the portable ways on Evennia).
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import subprocess

import pytest
from twisted.internet import defer

from evasync import (TASK_HANDLER, NotPersistableError, YieldError, create_object, delay,
                     interactive, run_async, sleep)
from howtos.command_duration import finish_brew
from howtos.offload import count_constellations

from tests import _support

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENNIA_PYTHON = ROOT / ".venv-evennia" / "bin" / "python"


@pytest.fixture(scope="module")
def evennia() -> dict:
    """What Evennia did, by fact (see tests/evennia/facts.py)."""
    done = subprocess.run([str(EVENNIA_PYTHON), str(ROOT / "tests" / "evennia" / "facts.py"),
                           str(ROOT / ".venv-evennia" / "game"), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"facts.py failed (is .venv-evennia built? make test builds " \
                                 f"it):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


@pytest.fixture
def hero(rt):
    hero = create_object(key="Hero")
    rt.listen(hero)
    return hero


class Unstorable:
    def __reduce__(self):
        raise TypeError("cannot be stored")


def test_task_ids_are_never_reused(rt, evennia):
    assert evennia["id of a new task after one ran"] == [1, 1]
    first = delay(5, _support.record)
    rt.advance(5)
    second = delay(5, _support.record)
    assert second.get_id() != first.get_id()
    # The old handle finds nothing and leaves the new task alone.
    assert (first.exists(), first.cancel(), first.remove(), first.do_task()) == (
        False, False, False, False)
    assert second.active()


def test_an_unstorable_argument_is_refused_at_delay_time_not_dropped(rt, hero, evennia):
    assert evennia["stored arguments of an unstorable one"] == 1   # of 2: one silently dropped
    assert evennia["persistent lambda"].startswith("raises ValueError")
    with pytest.raises(NotPersistableError):
        delay(5, finish_brew, hero, Unstorable(), persistent=True)
    with pytest.raises(NotPersistableError):
        delay(5, lambda: None, persistent=True)
    assert TASK_HANDLER.all() == [] and list(rt.store.tasks()) == []
    delay(5, finish_brew, hero, "tea", persistent=True)     # the portable way: plain data
    assert len(list(rt.store.tasks())) == 1


def test_a_wrong_delay_is_refused_at_the_call(rt, evennia):
    assert evennia["negative delay"] == "returns 'TaskHandlerTask'"
    assert evennia["callback not callable"] == "returns 'TaskHandlerTask'"
    assert evennia["bool delay"] == "returns 'TaskHandlerTask'"   # True taken as 1 s there
    with pytest.raises(ValueError):
        delay(-5, _support.record)
    with pytest.raises(TypeError):
        delay(5, "brew()")
    with pytest.raises(TypeError, match="not True"):
        delay(True, _support.record)


def test_pause_and_unpause_say_whether_they_did_something(rt, evennia):
    assert (evennia["pause()"], evennia["unpause()"]) == ("returns None", "returns None")
    task = delay(5, _support.record)
    assert (task.pause(), task.pause(), task.paused) == (True, False, True)
    assert (task.unpause(), task.unpause(), task.paused) == (True, False, False)


def test_a_persistent_task_is_due_on_the_one_clock_after_a_reload(rt, hero, evennia):
    # Evennia stores a wall-clock due time, so in a test on a task.Clock it is not due when
    # the virtual clock says so after a reload; evasync has one clock.
    assert evennia["persistent task due after a reload, on a task.Clock"] is False
    hero.db.brewing = "tea"
    delay(60, finish_brew, hero, "tea", persistent=True)
    rt.advance(30)
    rt.reload()
    rt.advance(30)
    assert rt.objects.get(hero.id).db.brewing is None


def test_an_interactive_call_returns_a_deferred_of_its_result(rt, hero, evennia):
    assert evennia["@interactive call"] == "returns None"

    @interactive
    def rest(caller):
        yield 1
        return 3

    done = rest(hero)
    assert isinstance(done, defer.Deferred)
    rt.advance(1)
    assert done.result == 3


def test_an_interactive_plain_function_returns_its_value_there_and_a_deferred_here(rt, hero,
                                                                                  evennia):
    # Evennia hands a function that is not a generator its value straight back (not None).
    assert evennia["@interactive call of a plain function"] == "returns 3"

    @interactive
    def plain(caller):
        return 3

    done = plain(hero)
    assert isinstance(done, defer.Deferred)
    assert done.result == 3


def test_interactive_mistakes_are_caught_early(rt, hero, evennia):
    assert evennia["@interactive without caller"].startswith("raises ValueError")
    assert evennia["@interactive yields a list"].startswith("raises ValueError")
    with pytest.raises(TypeError, match="needs a parameter named 'caller'"):
        @interactive
        def no_caller():
            yield "Ready? (yes/no)"

    thrown = []

    @interactive
    def bad_yield(caller):
        try:
            yield ["not", "a", "number"]
        except YieldError as exc:  # thrown into the function, where it can be handled
            thrown.append(exc)

    bad_yield(hero)
    assert len(thrown) == 1


def test_async_def_is_driven_here_and_never_run_by_evennia(rt, hero, evennia):
    assert evennia["@interactive async def: returns, and ran"] == ["coroutine", []]
    ran = []

    @interactive
    async def look_around(caller):
        await sleep(1)
        ran.append(caller.key)

    look_around(hero)
    rt.advance(1)
    assert ran == ["Hero"]


def test_answers_arrive_stripped_on_both_sides_here(rt, hero, evennia):
    assert evennia["answer to '   yes   '"] == ["   yes"]     # Evennia strips the end only
    answers = []

    @interactive
    def question(caller):
        answer = yield "Well? (yes/no)"
        answers.append(answer)
        answers.append(answer.strip())                       # the portable way

    question(hero)
    hero.execute_cmd("   yes   ")
    assert answers == ["yes", "yes"]


def test_run_async_refuses_what_it_cannot_call_with_a_type_error(rt, evennia):
    assert evennia["run_async(5)"] == "raises RuntimeError: '5' could not be handled by run_async"
    with pytest.raises(TypeError):
        run_async(5)


def test_run_async_takes_executor_and_returns_a_deferred(rt, evennia):
    assert evennia["run_async call"] == "returns None"
    # Evennia hands executor= on to the function:
    assert evennia["run_async(f, 1, executor='process') calls f with"] == [
        [1], {"executor": "process"}]
    got = []
    done = run_async(count_constellations, 3, stars=50, executor="process",
                     at_return=got.append)
    assert isinstance(done, defer.Deferred)
    assert rt.wait_for(done, timeout=60) == got[0] == count_constellations(3, stars=50)


def test_the_offloading_howto_stargazes_on_evennia_and_only_chart_needs_evasync(evennia):
    pairs = count_constellations(3, stars=50)
    assert evennia["stargaze 3 = 50 heard"] == [
        "You lie back and start counting the stars ...",
        f"You make out {pairs} constellation lines in the sky."]
    assert evennia["chart 3 = 50 heard"] == [
        "You lie back and start counting the stars ...",
        "You lose count: count_constellations() got an unexpected keyword argument 'executor'"]


def test_the_portable_way_to_a_worker_process_works_here_too(rt):
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        got = []
        done = run_async(pool.submit(count_constellations, 3, stars=50).result,
                         at_return=got.append)
        rt.wait_for(done, timeout=60)
    assert got == [count_constellations(3, stars=50)]


def test_the_portable_clock_is_the_one_now_reads(rt):
    rt.advance(12.5)
    from evasync import now

    assert TASK_HANDLER.clock.seconds() == now() == 12.5


def test_task_called_is_false_after_cancel_here_and_after_call_in_both(rt, evennia):
    assert evennia["called after call()"] is False            # the same in both
    assert evennia["called after cancel()"] is True           # Evennia's differs here
    task = delay(5, _support.record)
    task.call()
    assert task.called is False
    task.cancel()
    assert task.called is False
    assert (task.active(), task.exists()) == (False, True)  # the portable questions
