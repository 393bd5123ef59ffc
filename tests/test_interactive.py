"""``@interactive``: the ``caller`` check, the Deferred it returns, returnValue, errors and logging."""

from __future__ import annotations

import inspect
import warnings

import pytest
from twisted.internet import defer

import evasync
from evasync import CallerGone, YieldError, ask, interactive

from tests._commands_support import BasicCmdSet, Player, caught_log, rt  # noqa: F401


def result_of(d: defer.Deferred):
    """The value (or Failure) an already-fired Deferred holds; fails the test if not fired."""
    fired = []
    d.addBoth(fired.append)
    assert fired, "the Deferred has not fired yet"
    return fired[0]


# -- the caller check ---------------------------------------------------------------------------

def test_a_function_without_a_caller_parameter_is_refused_when_decorated():
    with pytest.raises(TypeError, match=r"greet\(player\).*needs a parameter named 'caller'"):
        @interactive
        def greet(player):
            yield 1


@pytest.mark.parametrize("source", [
    "def f(*caller): yield 1",
    "def f(**caller): yield 1",
    "def f(who, *, callers): yield 1",
])
def test_only_a_real_parameter_named_caller_counts(source):
    namespace = {}
    exec(source, namespace)
    with pytest.raises(TypeError, match="caller"):
        interactive(namespace["f"])


def test_something_not_callable_is_refused():
    with pytest.raises(TypeError, match="needs a function"):
        interactive("not a function")


def test_caller_may_be_passed_by_position_or_by_keyword(rt):
    alice, bob = Player(rt, "Alice"), Player(rt, "Bob")

    @interactive
    def poke(target, caller, times=1):
        answer = yield f"Poke {target} {times} time(s)?"
        return answer

    by_position = poke("the bear", alice.obj)
    by_keyword = poke(target="the wolf", caller=bob.obj, times=3)
    assert alice.heard() == ["Poke the bear 1 time(s)?"]
    assert bob.heard() == ["Poke the wolf 3 time(s)?"]
    alice.types("no")
    bob.types("yes")
    assert result_of(by_position) == "no" and result_of(by_keyword) == "yes"


def test_a_keyword_only_caller_works(rt):
    alice = Player(rt, "Alice")

    @interactive
    def hello(*, caller):
        return (yield "Hello?")

    d = hello(caller=alice.obj)
    alice.types("hi")
    assert result_of(d) == "hi"


def test_a_call_with_wrong_arguments_fails_like_any_python_call(rt):
    @interactive
    def hello(caller):
        yield 1

    with pytest.raises(TypeError):
        hello()


def test_methods_work_with_self_before_caller(rt):
    alice = Player(rt, "Alice")

    class Shop:
        price = 12

        @interactive
        def haggle(self, caller):
            """Ask the customer whether the price is right."""
            answer = yield f"{self.price} gold?"
            return answer == "yes"

    shop = Shop()
    d = shop.haggle(alice.obj)
    assert alice.heard() == ["12 gold?"]
    alice.types("yes")
    assert result_of(d) is True
    assert Shop.haggle.__doc__ == "Ask the customer whether the price is right."


def test_the_decorated_function_keeps_its_name_docstring_and_signature():
    def fishing(caller, bait="worm"):
        """Fish for a while."""
        yield 20

    wrapped = interactive(fishing)
    assert wrapped.__name__ == "fishing"
    assert wrapped.__qualname__ == fishing.__qualname__
    assert wrapped.__doc__ == "Fish for a while."
    assert wrapped.__wrapped__ is fishing
    assert inspect.signature(wrapped) == inspect.signature(fishing)


# -- the async-process page's story -------------------------------------------------------------

def test_the_wait_and_ask_loop_of_the_async_process_page(rt):
    alice = Player(rt, "Alice")

    @interactive
    def myfunc(caller):
        while True:
            caller.msg("Getting ready to wait ...")
            yield 5
            caller.msg("Now 5 seconds have passed.")
            response = yield "Do you want to wait another 5 secs?"
            if response.lower() not in ("yes", "y"):
                break
        return "done waiting"

    d = myfunc(alice.obj)
    assert alice.heard() == ["Getting ready to wait ..."]
    rt.advance(5)
    assert alice.heard() == ["Now 5 seconds have passed.", "Do you want to wait another 5 secs?"]
    alice.types("Y")
    assert alice.heard() == ["Getting ready to wait ..."]
    rt.advance(5)
    alice.heard()
    alice.types("no")
    assert result_of(d) == "done waiting"
    assert alice.heard() == []


def test_while_a_question_waits_the_players_line_is_an_answer_not_a_command(rt):
    alice = Player(rt, "Alice", BasicCmdSet)

    @interactive
    def ask_word(caller):
        return (yield "Say a word:")

    d = ask_word(alice.obj)
    alice.heard()
    alice.types("ping")                  # also a command name: still the answer
    assert result_of(d) == "ping"
    assert alice.heard() == []
    alice.types("ping")                  # no question any more: now it is the command
    assert alice.heard() == ["pong"]


def test_two_callers_interleave_and_one_pause_never_delays_the_other(rt):
    alice, bob = Player(rt, "Alice"), Player(rt, "Bob")

    @interactive
    def nap(caller, seconds):
        yield seconds
        caller.msg(f"awake at {rt.now:g}")

    nap(alice.obj, 60)
    nap(bob.obj, 1)
    rt.advance(1)
    assert bob.heard() == ["awake at 1"] and alice.heard() == []
    rt.advance(59)
    assert alice.heard() == ["awake at 60"]


def test_a_timed_question_from_an_interactive_function(rt):
    alice = Player(rt, "Alice")

    @interactive
    def offer(caller):
        answer = yield ask("Buy the sword for 10 gold?", timeout=15, default="no")
        return answer

    d = offer(alice.obj)
    rt.advance(15)
    assert result_of(d) == "no"


# -- return values ------------------------------------------------------------------------------

def test_the_deferred_fires_with_the_return_value(rt):
    @interactive
    def count(caller):
        yield 1
        return 3

    d = count(None)
    assert not d.called
    rt.advance(1)
    assert result_of(d) == 3


def test_evasync_returnValue_gives_the_value_without_any_deprecation_warning(rt):
    @interactive
    def count(caller):
        yield 1
        evasync.returnValue(3)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = count(None)
        rt.advance(1)
    assert result_of(d) == 3
    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


def test_twisteds_returnValue_in_upstream_code_still_gives_the_value(rt):
    @interactive
    def count(caller):
        yield 1
        defer.returnValue(3)

    d = count(None)
    with pytest.warns(DeprecationWarning, match="returnValue"):   # Twisted's warning, not ours
        rt.advance(1)
    assert result_of(d) == 3


def test_a_plain_function_gives_an_already_fired_deferred_of_its_result():
    @interactive
    def plain(caller):
        return f"hello {caller}"

    d = plain("Alice")
    assert isinstance(d, defer.Deferred) and d.called
    assert result_of(d) == "hello Alice"


def test_returnValue_in_a_plain_function_gives_its_value():
    @interactive
    def plain(caller):
        evasync.returnValue("early")

    assert result_of(plain(None)) == "early"


# -- exceptions ---------------------------------------------------------------------------------

def test_an_exception_in_a_plain_function_is_a_failed_deferred():
    @interactive
    def broken(caller):
        raise ValueError("no")

    d = broken(None)
    assert d.called
    assert result_of(d).check(ValueError)


def test_an_exception_after_a_yield_errbacks_the_deferred(rt):
    @interactive
    def broken(caller):
        yield 1
        raise KeyError("the key")

    d = broken(None)
    failures = []
    d.addErrback(failures.append)
    rt.advance(1)
    assert failures[0].check(KeyError)


def test_an_exception_nobody_handles_is_logged_with_its_traceback(rt):
    @interactive
    def broken(caller):
        yield 1
        raise KeyError("the key")

    with caught_log() as log:
        broken(None)             # nobody keeps the Deferred
        rt.advance(1)
    assert log.failure_types() == [KeyError]
    assert "broken" in log.failures()[0]["log_failure"].getTraceback()


def test_an_exception_someone_handles_is_not_logged(rt):
    @interactive
    def broken(caller):
        yield 1
        raise KeyError("the key")

    with caught_log() as log:
        d = broken(None)
        d.addErrback(lambda failure: None)
        rt.advance(1)
    assert log.failures() == []


def test_an_uncaught_wrong_yield_is_logged_naming_the_type(rt):
    @interactive
    def confused(caller):
        yield [5]

    with caught_log() as log:
        confused(None)
    assert log.failure_types() == [YieldError]
    assert "builtins.list" in str(log.failures()[0]["log_failure"].value)


def test_a_wrong_yield_can_be_caught_inside_the_function(rt):
    @interactive
    def careful(caller):
        try:
            yield {"seconds": 5}
        except YieldError:
            yield 5
        return "recovered"

    d = careful(None)
    rt.advance(5)
    assert result_of(d) == "recovered"


# -- leaving ------------------------------------------------------------------------------------

def test_disconnecting_closes_the_function_and_its_finally_runs(rt):
    alice = Player(rt, "Alice")
    alice.obj.ndb.resting = True

    @interactive
    def rest(caller):
        try:
            while True:
                yield 10
                answer = yield "Keep resting?"
                if answer != "yes":
                    return
        finally:
            caller.ndb.resting = False

    with caught_log() as log:
        d = rest(alice.obj)
        gone = []
        d.addErrback(lambda failure: gone.append(failure.check(CallerGone)))
        rt.advance(10)
        assert rt.disconnect(alice.obj) == 1
    assert alice.obj.ndb.resting is False
    assert gone == [CallerGone]
    assert log.failures() == []


def test_a_closed_function_nobody_listens_to_is_not_reported(rt):
    alice = Player(rt, "Alice")

    @interactive
    def rest(caller):
        yield 10

    with caught_log() as log:
        rest(alice.obj)
        rt.reload()
    assert log.failures() == []


def test_a_functools_partial_can_be_interactive(rt):
    import functools

    def greet(greeting, caller):
        caller.msg(greeting)
        yield 1
        return "greeted"

    hero = evasync.create_object(key="Hero")
    heard = rt.listen(hero)
    done = interactive(functools.partial(greet, "Hello"))(caller=hero)
    assert heard.take() == ["Hello"]
    rt.advance(1)
    assert done.result == "greeted"


def test_a_partial_without_a_caller_is_the_documented_type_error():
    import functools

    def lonely(text):
        yield 1

    with pytest.raises(TypeError, match="needs a parameter named 'caller'"):
        interactive(functools.partial(lonely, "x"))
