"""What Evennia does where evasync differs: observed on a real Evennia, printed as JSON.

Run by the Python of ``.venv-evennia``; ``tests/test_evennia_differences.py`` reads the output
and checks each fact beside evasync's behaviour::

    .venv-evennia/bin/python tests/evennia/facts.py GAME_TEMPLATE REPO

Evennia's task handler runs on a ``task.Clock`` here, as in Evennia's own tests, and is left as
it is otherwise (unlike in ``player.py``, its ``datetime.now`` is the wall clock).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

import player  # the transcript player beside this file: its game boot is reused


def _outcome(call) -> str:
    try:
        return f"returns {call()!r}"
    except Exception as exc:
        return f"raises {type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    template, repo = (os.path.abspath(path) for path in argv[1:3])
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    workdir = tempfile.mkdtemp(prefix="evasync-evennia-")
    try:
        player._boot(template, repo, workdir)
        facts = observe()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    answers.write(json.dumps(facts) + "\n")
    answers.flush()
    os._exit(0)  # Evennia's threads and Django's connections need no orderly goodbye here


def observe() -> dict:
    """Each fact, observed on the Evennia booted in this process."""
    from evennia import DefaultRoom, create_object
    from evennia.scripts.taskhandler import TASK_HANDLER
    from evennia.utils.utils import delay, interactive, run_async
    from twisted.internet import reactor
    from twisted.internet.task import Clock

    from howtos.command_duration import finish_brew

    TASK_HANDLER.clock = clock = Clock()
    room = create_object(DefaultRoom, key="Room", nohome=True)
    hero = create_object("typeclasses.characters.Character", key="Hero", location=room,
                         home=room)
    facts: dict[str, object] = {"version": __import__("evennia").__version__}

    def noted(*args, **kwargs):
        return ("called with", args, kwargs)

    # Ids: a finished task's id goes to the next new task.
    first = delay(5, noted)
    clock.advance(5)
    facts["id of a new task after one ran"] = [first.get_id(), delay(5, noted).get_id()]
    TASK_HANDLER.clear()

    # Storing: an argument that cannot be stored is dropped; a lambda callback is refused.
    class Unstorable:
        def __reduce__(self):
            raise TypeError("cannot be stored")

    kept = delay(5, finish_brew, hero, Unstorable(), persistent=True)
    facts["stored arguments of an unstorable one"] = len(TASK_HANDLER.tasks[kept.get_id()][2])
    facts["persistent lambda"] = _outcome(lambda: delay(5, lambda: None, persistent=True)
                                          and None)
    TASK_HANDLER.clear()

    # Checks at delay() time.
    facts["negative delay"] = _outcome(lambda: type(delay(-5, noted)).__name__)
    facts["callback not callable"] = _outcome(lambda: type(delay(5, "brew()")).__name__)
    facts["bool delay"] = _outcome(lambda: type(delay(True, noted)).__name__)
    TASK_HANDLER.clear()

    # The handle.
    task = delay(5, noted)
    facts["pause()"] = _outcome(task.pause)
    facts["unpause()"] = _outcome(task.unpause)
    task.call()
    facts["called after call()"] = task.called
    task.cancel()
    facts["called after cancel()"] = task.called
    TASK_HANDLER.clear()

    # A persistent task's due time is a wall-clock datetime: after a reload in virtual time
    # it is not due when the virtual clock says so.
    delay(60, finish_brew, hero, "tea", persistent=True)
    hero.db.brewing = "tea"
    TASK_HANDLER.clear(save=False)
    clock.advance(60)
    TASK_HANDLER.load()
    TASK_HANDLER.create_delays()
    clock.advance(0)
    facts["persistent task due after a reload, on a task.Clock"] = hero.db.brewing is None
    TASK_HANDLER.clear()

    # @interactive.
    @interactive
    def rest(caller):
        yield 1
        return 3

    facts["@interactive call"] = _outcome(lambda: rest(hero))

    @interactive
    def plain(caller):
        return 3

    facts["@interactive call of a plain function"] = _outcome(lambda: plain(hero))

    @interactive
    def no_caller():
        yield "Ready? (yes/no)"

    facts["@interactive without caller"] = _outcome(no_caller)

    @interactive
    def bad_yield(caller):
        yield ["not", "a", "number"]

    facts["@interactive yields a list"] = _outcome(lambda: bad_yield(hero))

    ran = []

    @interactive
    async def coroutine(caller):
        ran.append(caller.key)

    returned = coroutine(hero)
    facts["@interactive async def: returns, and ran"] = [type(returned).__name__, ran]
    returned.close()

    answers_seen = []

    @interactive
    def question(caller):
        answers_seen.append((yield "Well? (yes/no)"))

    question(hero)
    hero.execute_cmd("   yes   ")
    for _ in range(10):
        reactor.runUntilCurrent()
    facts["answer to '   yes   '"] = answers_seen

    # run_async.
    facts["run_async(5)"] = _outcome(lambda: run_async(5))
    got = []
    facts["run_async call"] = _outcome(
        lambda: run_async(noted, 1, executor="process", at_return=got.append))
    reactor.getThreadPool().start()
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        reactor.iterate(0.01)
    facts["run_async(f, 1, executor='process') calls f with"] = (
        [list(got[0][1]), got[0][2]] if got else None)

    # The offloading howto, ported: stargaze runs (in a thread); chart's executor= reaches
    # count_constellations.
    heard = []
    hero.msg = lambda text=None, *args, **kwargs: heard.append(text)
    hero.cmdset.add("howtos.offload.OffloadCmdSet")
    reactor.getThreadPool().start()
    for command in ("stargaze 3 = 50", "chart 3 = 50"):
        heard.clear()
        hero.execute_cmd(command)
        deadline = time.monotonic() + 60
        while len(heard) < 2 and time.monotonic() < deadline:
            reactor.iterate(0.01)
        facts[f"{command} heard"] = list(heard)
    reactor.getThreadPool().stop()
    return facts


if __name__ == "__main__":
    sys.exit(main(sys.argv))
