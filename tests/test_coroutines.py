"""``async def`` wherever a generator works: commands and @interactive functions that await
pauses, questions and Deferreds, driven by the same driver, in virtual time."""

from __future__ import annotations

import asyncio
import gc

import pytest
from twisted.internet import defer, task as twisted_task
from twisted.logger import LogLevel

from evasync import (CallerGone, CmdSet, Command, YieldError, ask, create_object, delay,
                     interactive, run_async, sleep)

from ._support import CALLS, record


@pytest.fixture
def hero(rt):
    hero = create_object(key="Hero")
    hero.heard = rt.listen(hero)
    return hero


# -- @interactive on an async function ----------------------------------------------------------

@interactive
async def forage(caller, rounds=2):
    found = []
    try:
        for number in range(rounds):
            await sleep(5)
            found.append(f"berry {number + 1}")
            caller.msg(f"You find {found[-1]}.")
        answer = await ask("Keep them? (yes/no)")
        return found if answer == "yes" else []
    finally:
        CALLS.append("forage over")


def test_an_interactive_coroutine_pauses_asks_and_returns_a_value(rt, hero):
    done = forage(hero)
    assert hero.heard.take() == []
    rt.advance(4.9)
    assert hero.heard.take() == []
    rt.advance(0.1)
    assert hero.heard.take() == ["You find berry 1."]
    rt.advance(5)
    assert hero.heard.take() == ["You find berry 2.", "Keep them? (yes/no)"]
    hero.execute_cmd("  yes ")
    assert done.result == ["berry 1", "berry 2"]
    assert CALLS == ["forage over"]


def test_ask_with_a_timeout_answers_the_default(rt, hero):
    @interactive
    async def haggle(caller):
        return await ask("Ten gold?", timeout=15, default="no")

    done = haggle(hero)
    rt.advance(15)
    assert done.result == "no"


def test_a_coroutine_awaits_run_async_on_the_reactor_executor(rt, hero):
    @interactive
    async def compute(caller):
        total = await run_async(sum, range(10), executor="reactor")
        caller.msg(f"Total {total}")
        return total

    done = compute(hero)
    rt.advance(0)
    assert done.result == 45 and hero.heard.take() == ["Total 45"]


def test_a_coroutine_awaits_run_async_in_a_thread(rt, hero):
    @interactive
    async def compute(caller):
        return await run_async(sum, range(1000))

    done = compute(hero)
    assert rt.wait_for(done, timeout=60) == 499500


def test_a_coroutine_awaits_a_tasks_deferred_and_any_twisted_deferred(rt, hero):
    @interactive
    async def wait_for_tea(caller):
        brewed = await delay(30, record, "tea").get_deferred()
        later = await twisted_task.deferLater(rt.clock, 5, lambda: "biscuit")
        already = await defer.succeed("cup")
        return brewed, later, already

    done = wait_for_tea(hero)
    rt.advance(30)
    assert not done.called
    rt.advance(5)
    assert done.result == ("recorded ('tea',)", "biscuit", "cup")


def test_a_failed_deferred_is_raised_at_the_await(rt, hero):
    @interactive
    async def careful(caller):
        try:
            await run_async(int, "nope", executor="reactor")
        except ValueError as exc:
            return f"caught {type(exc).__name__}"

    done = careful(hero)
    rt.advance(0)
    assert done.result == "caught ValueError"


def test_awaiting_many_fired_deferreds_does_not_overflow_the_stack(rt, hero):
    @interactive
    async def count(caller):
        total = 0
        for _ in range(20_000):
            total += await defer.succeed(1)
        return total

    assert count(hero).result == 20_000


def test_a_helper_coroutine_can_pause_for_its_caller(rt, hero):
    async def walk(caller, steps):
        for _ in range(steps):
            await sleep(1)
        caller.msg(f"{steps} steps")

    @interactive
    async def stroll(caller):
        await walk(caller, 3)
        await walk(caller, 2)

    stroll(hero)
    rt.advance(3)
    assert hero.heard.take() == ["3 steps"]
    rt.advance(2)
    assert hero.heard.take() == ["2 steps"]


# -- what the driver cannot serve -------------------------------------------------------------

class Foreign:
    """An awaitable of some other framework: it yields an object only its own loop knows."""

    def __await__(self):
        return (yield "a foreign loop's token")


@pytest.mark.parametrize("awaitable", [lambda: asyncio.sleep(0), Foreign])
def test_awaiting_what_the_driver_cannot_serve_is_a_clear_error_at_the_await(rt, hero,
                                                                             awaitable):
    @interactive
    async def wrong(caller):
        try:
            await awaitable()
        except YieldError as exc:
            return str(exc)

    message = wrong(hero).result
    assert "evasync.sleep" in message and "Deferred" in message and "yielded" in message


def test_an_uncaught_wrong_await_fails_the_deferred_and_is_logged(rt, hero, logged):
    @interactive
    async def wrong(caller):
        await Foreign()

    done = wrong(hero)
    assert done.called and done.result.check(YieldError)
    assert len(logged.at(LogLevel.error)) == 1


def test_sleep_and_ask_refuse_to_run_outside_the_driver(rt):
    async def elsewhere():
        await sleep(1)

    failed = defer.ensureDeferred(elsewhere())
    assert failed.result.check(RuntimeError)
    assert "does not run" in failed.result.getErrorMessage()
    failed.addErrback(lambda failure: None)


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "5", True])
def test_sleep_refuses_bad_seconds(seconds):
    with pytest.raises(ValueError, match="sleep"):
        sleep(seconds)


# -- lifetime: disconnect, delete, reload ------------------------------------------------------

def test_a_disconnect_raises_caller_gone_at_the_pending_await_and_finally_runs(rt, hero):
    seen = []

    @interactive
    async def doze(caller):
        try:
            await sleep(60)
        except CallerGone:
            seen.append("gone")
            raise
        finally:
            seen.append("finally")

    done = doze(hero)
    errors = []
    done.addErrback(errors.append)
    assert rt.disconnect(hero) == 1
    assert seen == ["gone", "finally"]
    assert errors[0].check(CallerGone)
    rt.advance(120)
    assert seen == ["gone", "finally"]


def test_a_disconnect_while_asking_ends_the_question_and_the_next_line_is_a_command(rt, hero):
    @interactive
    async def pester(caller):
        await ask("Well?")
        CALLS.append("answered")

    pester(hero)
    rt.disconnect(hero)
    rt.listen(hero)
    hero.execute_cmd("Well what?")
    assert CALLS == []


def test_a_disconnect_cancels_the_awaited_run_async_call(rt, hero):
    @interactive
    async def compute(caller):
        await run_async(record, "never", executor="reactor")

    compute(hero)
    rt.disconnect(hero)
    rt.advance(1)
    assert CALLS == []


def test_deleting_the_caller_and_reloading_end_coroutines_too(rt):
    ended = []

    @interactive
    async def idle(caller, name):
        try:
            await sleep(100)
        finally:
            ended.append(name)

    first, second = create_object(key="First"), create_object(key="Second")
    idle(first, "deleted")
    idle(second, "reloaded")
    first.delete()
    assert ended == ["deleted"]
    rt.reload()
    assert ended == ["deleted", "reloaded"]


def test_a_coroutine_that_keeps_awaiting_after_caller_gone_is_closed(rt, hero):
    @interactive
    async def stubborn(caller):
        while True:
            try:
                await sleep(10)
            except CallerGone:
                CALLS.append("ignored CallerGone")

    done = stubborn(hero)
    done.addErrback(lambda failure: None)
    rt.disconnect(hero)
    rt.advance(100)
    assert CALLS == ["ignored CallerGone"]     # then closed: it never resumed again
    assert rt.driver.close_caller(hero) == 0


def test_a_failure_nobody_waits_for_is_logged_exactly_once(rt, hero, logged):
    @interactive
    async def clumsy(caller):
        await sleep(1)
        raise KeyError("dropped the tray")

    done = clumsy(hero)
    rt.advance(1)
    assert len(logged.at(LogLevel.error)) == 1
    assert "clumsy" in logged.texts(LogLevel.error)[0]
    later = []
    done.addErrback(later.append)           # added later: still gets the failure
    assert later[0].check(KeyError)
    del done, later
    gc.collect()
    assert len(logged.at(LogLevel.error)) == 1   # and Twisted does not report it again


def test_a_caller_gone_nobody_waits_for_is_not_reported_but_kept(rt, hero, logged):
    @interactive
    async def doze(caller):
        await sleep(60)

    done = doze(hero)
    rt.disconnect(hero)
    gc.collect()
    assert logged.at(LogLevel.error) == [] and logged.at(LogLevel.critical) == []
    later = []
    done.addErrback(later.append)
    assert later[0].check(CallerGone)


# -- async def func() in a command -------------------------------------------------------------

class CmdForge(Command):
    """Forge something, step by step (an async command)."""

    key = "forge"

    async def func(self):
        self.msg(f"You heat the metal for {self.args.strip()}.")
        await sleep(10)
        answer = await ask("Quench it now? (yes/no)", timeout=20, default="yes")
        if answer != "yes":
            self.msg("You let it cool slowly.")
            return
        total = await run_async(sum, [1, 2, 3], executor="reactor")
        self.msg(f"Hiss! {total} sparks fly.")

    def at_post_cmd(self):
        self.msg("(forge done)")


class ForgeCmdSet(CmdSet):
    def at_cmdset_creation(self):
        self.add(CmdForge)


def test_an_async_command_pauses_asks_awaits_and_then_runs_at_post_cmd(rt, hero):
    hero.cmdset.add(ForgeCmdSet)
    done = hero.execute_cmd("forge a blade")
    assert hero.heard.take() == ["You heat the metal for a blade."]
    hero.execute_cmd("look")                 # not asked yet: an ordinary command
    rt.advance(10)
    assert hero.heard.take()[-1] == "Quench it now? (yes/no)"
    hero.execute_cmd("yes")
    rt.advance(0)
    assert hero.heard.take() == ["Hiss! 6 sparks fly.", "(forge done)"]
    assert done.called


def test_an_async_command_is_ended_by_a_disconnect_without_at_post_cmd(rt, hero):
    hero.cmdset.add(ForgeCmdSet)
    hero.execute_cmd("forge a nail")
    rt.disconnect(hero)
    rt.advance(100)
    assert hero.heard.take() == ["You heat the metal for a nail."]


def test_an_async_command_that_fails_is_reported_to_the_player_once(rt, hero, logged):
    class CmdBreak(Command):
        key = "break"

        async def func(self):
            await sleep(1)
            raise RuntimeError("snapped")

    class BreakSet(CmdSet):
        def at_cmdset_creation(self):
            self.add(CmdBreak)

    hero.cmdset.add(BreakSet)
    hero.execute_cmd("break")
    rt.advance(1)
    assert hero.heard.take() == ["Sorry, 'break' failed with an error (RuntimeError); it has "
                                 "been logged."]
    gc.collect()
    assert len(logged.at(LogLevel.error)) == 1
