"""The generator driver: pauses, questions, ask() timeouts, wrong yields, closing, return values.

Every test runs in virtual time: ``rt.advance(s)`` is the only way time passes.
"""

from __future__ import annotations

import math
import warnings
from decimal import Decimal

import pytest
from twisted.internet import defer

import evasync
from evasync import CallerGone, YieldError, ask, create_object
from evasync.testing import VirtualRuntime

from tests._commands_support import Player, caught_log, rt  # noqa: F401  (rt is a fixture)


class Watch:
    """Listens to a driver Deferred from the start, as a caller of ``@interactive`` would."""

    def __init__(self, d: defer.Deferred) -> None:
        self._fired: list = []
        d.addBoth(self._fired.append)

    @property
    def pending(self) -> bool:
        return not self._fired

    @property
    def result(self):
        """The value (or Failure) the Deferred fired with; fails the test if it has not fired."""
        assert self._fired, "the Deferred has not fired yet"
        return self._fired[0]


# -- pauses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [3, 2.5])
def test_a_pause_resumes_the_generator_after_exactly_that_many_seconds(rt, seconds):
    woke = []

    def sleeper():
        yield seconds
        woke.append(rt.now)

    run = Watch(rt.driver.run(sleeper(), None))
    rt.advance(seconds - 0.01)
    assert woke == [] and run.pending
    rt.advance(0.01)
    assert woke == [pytest.approx(seconds)]
    assert run.result is None


def test_a_zero_pause_resumes_on_the_next_turn_not_inline(rt):
    steps = []

    def quick():
        steps.append("before")
        yield 0
        steps.append("after")

    rt.driver.run(quick(), None)
    assert steps == ["before"]          # the driver returned to its caller first
    rt.advance(0)
    assert steps == ["before", "after"]


def test_a_pause_delays_only_its_own_generator(rt):
    log = []

    def walker(name, pause):
        log.append((rt.now, name, "start"))
        yield pause
        log.append((rt.now, name, "end"))

    rt.driver.run(walker("slow", 100), None)
    rt.driver.run(walker("quick", 1), None)
    rt.advance(1)
    assert log == [(0, "slow", "start"), (0, "quick", "start"), (1, "quick", "end")]
    rt.advance(99)
    assert log[-1] == (100, "slow", "end")


def test_a_generator_runs_to_its_first_yield_at_once(rt):
    started = []

    def gen():
        started.append(True)
        yield 1

    rt.driver.run(gen(), None)
    assert started == [True]
    assert len(rt.driver) == 1


# -- yielding something else --------------------------------------------------------------------

@pytest.mark.parametrize("bad", [True, -1, -0.5, math.nan, math.inf, Decimal("1"), [1], None,
                                 b"bytes", object()])
def test_a_wrong_yield_is_thrown_back_into_the_generator_which_can_catch_it(rt, bad):
    caught = []

    def gen():
        try:
            yield bad
        except YieldError as exc:
            caught.append(str(exc))
        yield 1
        return "recovered"

    run = Watch(rt.driver.run(gen(), None))
    assert len(caught) == 1
    assert type(bad).__name__ in caught[0]
    assert "yield a number of seconds" in caught[0]   # says how to fix it
    rt.advance(1)
    assert run.result == "recovered"


def test_an_uncaught_wrong_yield_fails_the_run_naming_the_type(rt):
    def gen():
        yield {"not": "seconds"}

    failure = Watch(rt.driver.run(gen(), None)).result
    assert failure.check(YieldError)
    assert isinstance(failure.value, TypeError)       # a YieldError is a TypeError too
    assert "builtins.dict" in str(failure.value)


def test_asking_without_a_caller_is_a_yield_error(rt):
    def gen():
        try:
            yield "Anyone there?"
        except YieldError as exc:
            return str(exc)

    assert "no caller" in Watch(rt.driver.run(gen(), None)).result


# -- questions ----------------------------------------------------------------------------------

def test_a_question_goes_to_the_caller_and_the_next_line_answers_it_stripped(rt):
    alice = Player(rt, "Alice")

    def gen():
        name = yield "What is your name?"
        return name

    run = Watch(rt.driver.run(gen(), alice.obj))
    assert alice.heard() == ["What is your name?"]
    assert rt.driver.is_asking(alice.obj)
    assert alice.types("   Alice of the Woods \t ") is not None
    assert run.result == "Alice of the Woods"
    assert not rt.driver.is_asking(alice.obj)


def test_a_line_nobody_asked_for_is_not_taken_as_an_answer(rt):
    alice = Player(rt, "Alice")
    assert rt.driver.answer(alice.obj, "yes") is False


def test_several_questions_to_one_caller_are_answered_in_the_order_asked(rt):
    alice = Player(rt, "Alice")
    answers = {}

    def quiz(topic):
        answers[topic] = yield f"Your favourite {topic}?"

    for topic in ("colour", "food", "song"):
        rt.driver.run(quiz(topic), alice.obj)
    assert alice.heard() == ["Your favourite colour?", "Your favourite food?",
                             "Your favourite song?"]
    for line in ("blue", " bread", "the one about the river "):
        alice.types(line)
    assert answers == {"colour": "blue", "food": "bread", "song": "the one about the river"}


def test_a_follow_up_question_queues_behind_those_already_waiting(rt):
    alice = Player(rt, "Alice")
    heard = []

    def interview():
        heard.append((yield "First?"))
        heard.append((yield "Third?"))     # asked after the other generator's question

    def other():
        heard.append((yield "Second?"))

    rt.driver.run(interview(), alice.obj)
    rt.driver.run(other(), alice.obj)
    alice.types("one")
    alice.types("two")
    alice.types("three")
    assert heard == ["one", "two", "three"]
    assert alice.heard() == ["First?", "Second?", "Third?"]


def test_questions_to_different_callers_do_not_mix(rt):
    alice, bob = Player(rt, "Alice"), Player(rt, "Bob")

    def ask_name():
        return (yield "Name?")

    a = Watch(rt.driver.run(ask_name(), alice.obj))
    b = Watch(rt.driver.run(ask_name(), bob.obj))
    bob.types("Bob")
    assert a.pending and b.result == "Bob"
    alice.types("Alice")
    assert a.result == "Alice"


# -- ask() with a timeout -----------------------------------------------------------------------

def test_an_unanswered_ask_answers_itself_with_the_default_after_the_timeout(rt):
    alice = Player(rt, "Alice")

    def confirm():
        return (yield ask("Really quit?", timeout=30, default="no"))

    run = Watch(rt.driver.run(confirm(), alice.obj))
    assert alice.heard() == ["Really quit?"]
    rt.advance(29.9)
    assert run.pending
    rt.advance(0.1)
    assert run.result == "no"
    assert not rt.driver.is_asking(alice.obj)


def test_an_answer_before_the_timeout_cancels_it(rt):
    alice = Player(rt, "Alice")
    answers = []

    def confirm():
        answers.append((yield ask("Really quit?", timeout=30, default="no")))
        yield 100      # still running when the old timeout would have struck

    rt.driver.run(confirm(), alice.obj)
    rt.advance(10)
    alice.types("yes")
    assert answers == ["yes"]
    assert [c.getTime() for c in rt.clock.getDelayedCalls()] == [110]   # only the pause
    rt.advance(50)
    assert answers == ["yes"]


def test_after_a_timeout_the_next_line_goes_to_the_next_question(rt):
    alice = Player(rt, "Alice")
    answers = {}

    def quick():
        answers["quick"] = yield ask("Quick, a number!", timeout=5, default="too slow")

    def patient():
        answers["patient"] = yield "Take your time: a colour?"

    rt.driver.run(quick(), alice.obj)
    rt.driver.run(patient(), alice.obj)
    rt.advance(5)
    alice.types("green")
    assert answers == {"quick": "too slow", "patient": "green"}


def test_ask_without_a_timeout_waits_like_a_plain_question(rt):
    alice = Player(rt, "Alice")

    def gen():
        return (yield ask("Sure?"))

    run = Watch(rt.driver.run(gen(), alice.obj))
    rt.advance(10_000)
    assert run.pending
    alice.types("sure")
    assert run.result == "sure"


def test_a_default_can_be_any_value(rt):
    alice = Player(rt, "Alice")

    def gen():
        return (yield ask("Sure?", timeout=0, default=None))

    run = Watch(rt.driver.run(gen(), alice.obj))
    rt.advance(0)
    assert run.result is None


@pytest.mark.parametrize("kwargs, error", [
    ({"question": 42}, TypeError),
    ({"question": "Sure?", "timeout": -1}, ValueError),
    ({"question": "Sure?", "timeout": math.inf}, ValueError),
    ({"question": "Sure?", "timeout": math.nan}, ValueError),
    ({"question": "Sure?", "timeout": True}, ValueError),
    ({"question": "Sure?", "timeout": "30"}, ValueError),
])
def test_ask_refuses_bad_arguments_when_made(kwargs, error):
    with pytest.raises(error):
        ask(**kwargs)


def test_ask_has_a_readable_repr():
    assert repr(ask("Sure?", timeout=3, default="no")) == "ask('Sure?', timeout=3, default='no')"


# -- closing: disconnect, delete, reload --------------------------------------------------------

def test_disconnecting_closes_the_callers_generators_and_their_finally_blocks_run(rt):
    alice, bob = Player(rt, "Alice"), Player(rt, "Bob")
    cleaned = []

    def waits(name, first):
        try:
            yield first
            yield 10
        finally:
            cleaned.append(name)

    a1 = Watch(rt.driver.run(waits("alice pausing", 10), alice.obj))
    a2 = Watch(rt.driver.run(waits("alice asking", "Ready?"), alice.obj))
    b = Watch(rt.driver.run(waits("bob pausing", 10), bob.obj))

    assert rt.disconnect(alice.obj) == 2
    assert sorted(cleaned) == ["alice asking", "alice pausing"]
    assert a1.result.check(CallerGone) and a2.result.check(CallerGone)
    assert not rt.driver.is_asking(alice.obj)
    assert len(rt.driver) == 1 and b.pending
    rt.advance(20)
    assert cleaned[-1] == "bob pausing" and b.result is None


def test_a_closed_generator_leaves_nothing_scheduled(rt):
    alice = Player(rt, "Alice")

    def gen():
        yield ask("Sure?", timeout=30, default="no")

    rt.driver.run(gen(), alice.obj)
    rt.disconnect(alice.obj)
    assert rt.clock.getDelayedCalls() == []
    assert len(rt.driver) == 0


def test_deleting_the_caller_closes_its_generators(rt):
    alice = Player(rt, "Alice")
    cleaned = []

    def gen():
        try:
            yield "Which door?"
        finally:
            cleaned.append("door question closed")

    rt.driver.run(gen(), alice.obj)
    alice.obj.delete()
    assert cleaned == ["door question closed"]
    assert not rt.driver.is_asking(alice.obj)


def test_a_generator_that_disconnects_its_own_caller_is_closed_at_its_next_yield(rt):
    alice = Player(rt, "Alice")
    steps = []

    def quitting():
        try:
            yield "Really quit?"
            steps.append("saying goodbye")
            rt.disconnect(alice.obj)        # the player quits from inside the generator
            steps.append("still running to the yield")
            yield 5
            steps.append("resumed: must not happen")
        finally:
            steps.append("finally")

    with caught_log() as log:
        run = Watch(rt.driver.run(quitting(), alice.obj))
        alice.types("yes")
        assert steps == ["saying goodbye", "still running to the yield", "finally"]
        assert run.result.check(CallerGone)
        rt.advance(10)
    assert steps[-1] == "finally"
    assert log.failures() == []
    assert len(rt.driver) == 0 and rt.clock.getDelayedCalls() == []


def test_a_generator_that_deletes_its_caller_after_a_pause_is_closed_cleanly(rt):
    alice = Player(rt, "Alice")
    steps = []

    def vanish():
        try:
            yield 1
            alice.obj.delete()
            yield 1
            steps.append("resumed: must not happen")
        finally:
            steps.append("finally")

    with caught_log() as log:
        run = Watch(rt.driver.run(vanish(), alice.obj))
        rt.advance(5)
    assert steps == ["finally"]
    assert run.result.check(CallerGone)
    assert log.failures() == []


def test_a_generator_finishing_after_disconnecting_its_caller_just_returns(rt):
    alice = Player(rt, "Alice")

    def gen():
        yield 1
        rt.disconnect(alice.obj)
        return "bye"

    run = Watch(rt.driver.run(gen(), alice.obj))
    rt.advance(1)
    assert run.result == "bye"


def test_reload_closes_pauses_cleanly_and_nothing_resumes_afterwards(rt):
    alice = Player(rt, "Alice")
    steps = []

    def long_task():
        try:
            yield 60
            steps.append("resumed: must not happen")
        finally:
            steps.append("finally")

    with caught_log() as log:
        run = Watch(rt.driver.run(long_task(), alice.obj))
        rt.reload()
        rt.advance(120)
    assert steps == ["finally"]
    assert run.result.check(CallerGone)
    assert log.failures() == []
    assert len(rt.driver) == 0


def test_a_finally_block_that_raises_on_close_is_reported(rt):
    alice = Player(rt, "Alice")

    def gen():
        try:
            yield 10
        finally:
            raise RuntimeError("cleanup broke")

    run = Watch(rt.driver.run(gen(), alice.obj))
    rt.disconnect(alice.obj)
    failure = run.result
    assert failure.check(RuntimeError) and "cleanup broke" in str(failure.value)


def test_a_generator_that_keeps_yielding_when_closed_is_reported(rt):
    alice = Player(rt, "Alice")

    def stubborn():
        try:
            yield 10
        except GeneratorExit:
            yield 1          # wrong: a closed generator must not yield again

    run = Watch(rt.driver.run(stubborn(), alice.obj))
    rt.disconnect(alice.obj)
    assert run.result.check(RuntimeError)
    assert rt.clock.getDelayedCalls() == []


# -- return values and exceptions ---------------------------------------------------------------

def test_return_gives_the_deferred_its_value(rt):
    def gen():
        yield 1
        return 42

    run = Watch(rt.driver.run(gen(), None))
    rt.advance(1)
    assert run.result == 42


def test_evasync_returnValue_ends_the_generator_with_a_value_and_no_warning(rt):
    def gen():
        yield 1
        evasync.returnValue("done")
        raise AssertionError("returnValue must not return")

    run = Watch(rt.driver.run(gen(), None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rt.advance(1)
    assert run.result == "done"


def test_evasync_returnValue_is_not_swallowed_by_except_exception(rt):
    def gen():
        yield 1
        try:
            evasync.returnValue("done")
        except Exception:
            return "swallowed"

    run = Watch(rt.driver.run(gen(), None))
    rt.advance(1)
    assert run.result == "done"


def test_twisteds_returnValue_from_upstream_code_is_understood(rt):
    def gen():
        yield 1
        defer.returnValue("upstream")

    run = Watch(rt.driver.run(gen(), None))
    with pytest.warns(DeprecationWarning):    # Twisted's own, deprecated function warns
        rt.advance(1)
    assert run.result == "upstream"


def test_an_exception_after_a_pause_fails_the_deferred(rt):
    def gen():
        yield 1
        raise KeyError("lost")

    run = Watch(rt.driver.run(gen(), None))
    rt.advance(1)
    assert run.result.check(KeyError)
    assert len(rt.driver) == 0


def test_an_exception_before_the_first_yield_fails_at_once(rt):
    def gen():
        raise ValueError("early")
        yield 1

    assert Watch(rt.driver.run(gen(), None)).result.check(ValueError)


def test_a_separate_runtime_has_its_own_driver():
    with VirtualRuntime() as first:
        hero = create_object(key="Hero")

        def gen():
            yield 5

        first.driver.run(gen(), hero)
        with VirtualRuntime() as second:
            assert len(second.driver) == 0
        assert len(first.driver) == 1


def test_any_object_with_msg_can_be_a_caller_even_an_unhashable_one(rt):
    class Terminal:
        __hash__ = None                  # e.g. a dataclass with eq=True

        def __init__(self):
            self.lines = []

        def msg(self, text):
            self.lines.append(text)

    terminal = Terminal()

    def gen():
        yield 1
        return (yield "Name?")

    run = Watch(rt.driver.run(gen(), terminal))
    rt.advance(1)
    assert terminal.lines == ["Name?"] and rt.driver.is_asking(terminal)
    rt.driver.answer(terminal, " Zed ")
    assert run.result == "Zed"
    assert rt.driver.close_caller(terminal) == 0


def test_a_generator_that_reloads_the_server_is_closed_with_everything_else(rt):
    alice = Player(rt, "Alice")
    steps = []

    def admin_reload():
        try:
            yield 1
            rt.reload()                      # like a "reload" command with a countdown
            steps.append("reloaded")
            yield 1
            steps.append("resumed: must not happen")
        finally:
            steps.append("finally")

    with caught_log() as log:
        run = Watch(rt.driver.run(admin_reload(), alice.obj))
        rt.advance(5)
    assert steps == ["reloaded", "finally"]
    assert run.result.check(CallerGone)
    assert log.failures() == []


def test_a_question_survives_one_of_two_connections_closing_and_ends_with_the_last():
    from evasync import create_object
    from evasync.testing import Recorder, VirtualRuntime

    with VirtualRuntime() as rt:
        hero = create_object(key="Hero")
        laptop, phone = Recorder(), Recorder()
        hero.sessions.extend([laptop, phone])
        closed = []

        def waiting(caller):
            try:
                yield "Ready?"
            finally:
                closed.append(True)

        rt.driver.run(waiting(hero), hero)
        assert rt.disconnect(hero, laptop) == 0 and not closed
        assert rt.disconnect(hero, phone) == 1 and closed == [True]


def test_a_generator_that_keeps_yielding_wrong_things_does_not_overflow_the_stack():
    from evasync.testing import VirtualRuntime

    with VirtualRuntime() as rt:
        def stubborn():
            caught = 0
            while caught < 3000:
                try:
                    yield object()
                except YieldError:
                    caught += 1
            return caught

        done = rt.driver.run(stubborn(), None)
        assert done.result == 3000 and len(rt.driver) == 0


def test_a_question_that_cannot_be_sent_is_thrown_into_the_generator_not_left_waiting():
    from evasync import create_object
    from evasync.testing import VirtualRuntime

    class Broken:
        def send(self, text):
            raise ConnectionError("socket gone")

    with VirtualRuntime() as rt:
        hero = create_object(key="Hero")
        hero.sessions.append(Broken())

        def asking():
            try:
                yield "Still there?"
            except ConnectionError:
                return "gave up"

        done = rt.driver.run(asking(), hero)
        assert done.result == "gave up"
        assert not rt.driver.is_asking(hero)


def test_a_session_that_hangs_up_while_being_asked_leaves_no_question_behind(rt):
    hero = create_object(key="Hero")

    class HangsUp:
        def send(self, text):
            rt.disconnect(hero, self)       # the socket closed while the question went out

    hero.sessions.append(HangsUp())
    closed = []

    def asking():
        try:
            answer = yield "Still there?"
            closed.append(f"answered {answer}")
        finally:
            closed.append("closed")

    done = rt.driver.run(asking(), hero)
    assert closed == ["closed"] and done.result.check(CallerGone)
    done.addErrback(lambda failure: None)
    assert not rt.driver.is_asking(hero)
    screen = rt.listen(hero)
    hero.execute_cmd("help")                 # the next line is a command, not an answer
    assert screen.take()[0].startswith("Available commands")
    assert closed == ["closed"]
