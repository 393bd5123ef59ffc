"""A hostile review of the core runtime (tasks, store, codec, db containers, driver, timers,
failure policy, run_async): each test is named after a bug the review found (each failed before
its fix) and keeps it fixed.

Grouped by the file at fault. Every test runs in virtual time except the few that need a real
process (marked by what they start); none waits on the wall clock for a delay.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from evasync import (TASK_HANDLER, CallerGone, create_object, delay, interactive, run_async,
                     sleep)
from evasync import _failures
from evasync._codec import Trust, resolve_path
from evasync._timers import Timers
from evasync.errors import NotPersistableError, StoreError
from evasync.runtime import Runtime, use_runtime
from evasync.store import Store, count_quarantined

from . import _support
from ._support import CALLS, record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hero(rt):
    hero = create_object(key="Hero")
    hero.heard = rt.listen(hero)
    return hero


def insert_row(rt, task_id, callback, args, due=0.0, state="scheduled"):
    rt.store.conn.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                          (task_id, due, state, json.dumps(callback), json.dumps(args),
                           '{"d":[]}'))


class Levels(list):
    """Log levels, texts and failure reprs only: keeps no event (an event's failure would keep
    its Deferred alive and hide Twisted's garbage-collection report)."""

    def __call__(self, event):
        failure = event.get("log_failure")
        self.append((event.get("log_level"), formatEvent(event),
                     repr(failure.value) if failure is not None else ""))

    def reports_of(self, marker):
        return [(level, text) for level, text, failure in self
                if level in (LogLevel.error, LogLevel.critical) and marker in failure]


@pytest.fixture
def levels():
    seen = Levels()
    globalLogPublisher.addObserver(seen)
    yield seen
    globalLogPublisher.removeObserver(seen)


# == _codec.py: which names the store may hold =================================================

def test_trust_bypass_a_trusted_modules_import_reaches_os(rt, tmp_path):
    """The store row ``evasync.store:os.mkdir`` runs ``os.mkdir`` at load.

    ``resolve_path`` checks trust on the *module* named before the colon, then follows the
    qualname with ``getattr`` through anything, modules included: every trusted module that
    imports ``os``, ``subprocess`` or ``pickle`` (evasync.store, evasync.run_async, most game
    modules, ``tests._support.os``...) hands out the whole standard library. The store page and
    ``_codec``'s docstring promise that a row naming ``os:system`` is never run.
    """
    marker = tmp_path / "pwned"
    insert_row(rt, 9, {"path": "evasync.store:os.mkdir"}, [str(marker)])
    rt.reload()
    rt.advance(1)
    assert not marker.exists(), "a store row ran os.mkdir through evasync.store's import of os"
    assert [task_id for task_id, _ in rt.store.quarantined()] == [9]


@pytest.mark.parametrize("module, qualname", [
    ("evasync.store", "os.system"),                 # a module imported by a trusted module
    ("evasync.run_async", "pickle.loads"),          # pickle with stored bytes: any code at all
    ("evasync", "TASK_HANDLER.clear"),              # wipes every stored task
    ("howtos", "__builtins__.__setitem__"),         # rebinds a builtin for the whole process
])
def test_trust_bypass_resolve_path_follows_attributes_out_of_the_trusted_module(module, qualname):
    """A stored name must resolve to a function or class *defined* in the trusted module
    (its ``__module__`` and ``__qualname__`` are the stored ones, which is all that ``delay()``
    ever stores), never to something reached through it."""
    with pytest.raises(LookupError):
        resolve_path(module, qualname, Trust())


def test_trust_bypass_evasync_server_run_code_executes_a_stored_string(rt, tmp_path):
    """``evasync`` is trusted wholesale, and ``evasync.server.commands:run_code(code, ns)`` is
    ``exec``: a store row naming it runs any Python it carries. Trusting a package should not
    include the one function in it whose job is running arbitrary code (or evasync's trusted
    names should be an explicit list: its typeclasses and command sets)."""
    marker = tmp_path / "pwned"
    insert_row(rt, 9, {"path": "evasync.server.commands:run_code"},
               [f"open({str(marker)!r}, 'w').close()", {"d": []}])
    rt.reload()
    rt.advance(1)
    assert not marker.exists(), "a store row ran arbitrary Python through run_code"


def test_callback_cache_accepts_a_function_whose_name_no_longer_imports(rt, monkeypatch):
    """``callback_text`` caches the stored form per function object and, on a hit, only checks
    trust: the import round trip is skipped. A function whose module attribute was removed or
    rebound since (module reloaded, monkeypatched, renamed in a hot-reload) is then accepted
    by ``delay(persistent=True)`` and quarantined at the next load: accepted, then lost, the
    thing the ``delay()``-time check exists to prevent."""
    function = _support.vanishing
    delay(1, function, persistent=True)                 # fills the cache
    monkeypatch.delattr(_support, "vanishing")
    with pytest.raises(NotPersistableError):
        delay(1, function, persistent=True)


# == tasks.py ====================================================================================

def test_load_imports_a_broken_trusted_module_again_for_every_row(rt, tmp_path, monkeypatch):
    """A game module that raises on import (a typo at its bottom) is executed again for each
    row naming it: a failed import leaves nothing in ``sys.modules`` and ``load()`` caches only
    successes. 10,000 such rows run the module's top level 10,000 times during a load (with its
    side effects: connections opened, files written, log lines), on the reactor, while the game
    is starting."""
    package = tmp_path / "review_broken_game"
    package.mkdir()
    (package / "__init__.py").write_text("imports = 0\n")
    (package / "spells.py").write_text(textwrap.dedent("""
        import review_broken_game
        review_broken_game.imports += 1
        raise RuntimeError("a typo at the bottom of the module")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "review_broken_game", raising=False)
    for task_id in range(1000, 1200):
        insert_row(rt, task_id, {"path": "review_broken_game.spells:fireball"}, [], due=5.0)
    rt.reload()
    import review_broken_game

    try:
        assert len(rt.store.quarantined()) == 200
        assert review_broken_game.imports == 1, (
            f"the broken module ran {review_broken_game.imports} times in one load")
    finally:
        sys.modules.pop("review_broken_game", None)
        sys.modules.pop("review_broken_game.spells", None)


def test_add_raises_after_scheduling_when_stale_cleanup_fails_and_forgets_the_stale_task(rt):
    """``add()`` runs the stale clean-up after the new task is stored and scheduled. When the
    clean-up's DELETE fails (a full disk), ``delay()`` raises StoreError although the new task
    *was* added (a caller that retries schedules it twice), and the stale task, already popped
    from ``_cancelled``, is never cleaned up again in this process."""
    old = delay(1, record, "old", persistent=True)
    old.cancel()
    rt.advance(100)                                     # 'old' is now stale
    real_delete = rt.store.delete_tasks

    def disk_full(task_ids):
        raise StoreError("disk full")

    rt.store.delete_tasks = disk_full
    try:
        new = delay(5, record, "new")                   # must not raise: the task is there
    except StoreError:
        new = None
    finally:
        rt.store.delete_tasks = real_delete
    assert new is not None, "delay() raised although it scheduled its task"
    assert rt.tasks.clean_stale_tasks() == 1 and not old.exists()


def test_unpause_after_a_clock_swap_uses_the_old_clocks_time_on_the_new_clock(rt, hero):
    """``TASK_HANDLER.clock = Clock()`` keeps what is scheduled on the old clock, but a task
    paused and unpaused afterwards is put on the *new* clock at its due time measured on the
    *old* one (here 1010 s on a clock at 0), so it fires 1000 s late (or, the other way round,
    at once). ``unpause`` also compares the due time with the new clock."""
    rt.advance(1000)
    task = delay(10, hero.msg, "tick")
    new_clock = Clock()
    TASK_HANDLER.clock = new_clock
    task.pause()
    task.unpause()
    rt.advance(10)                                      # rt.clock is the new clock now
    assert hero.heard.take() == ["tick"], (
        f"due at {[c.getTime() for c in new_clock.getDelayedCalls()]} on the new clock")


# == _timers.py ==================================================================================

def test_timers_run_a_later_entry_before_an_earlier_clock_call_on_a_long_advance():
    """``Timers._run`` runs every entry due by the clock's *current* time. When the clock
    jumps (``Clock.advance(10)``, Evennia's test idiom; or a real reactor that was busy), the
    Timers' one call, due at 3, runs its entry at 7 before the clock's own call at 5. Twisted's
    clocks run 3, 5, 7: the module docstring promises "the same order as the clock"."""
    clock = Clock()
    timers = Timers(clock)
    ran = []
    timers.at(3, ran.append, "timer at 3")
    clock.callLater(5, ran.append, "clock at 5")
    timers.at(7, ran.append, "timer at 7")
    clock.advance(10)
    assert ran == ["timer at 3", "clock at 5", "timer at 7"]


def test_delays_and_pauses_fire_out_of_time_order_on_evennias_swapped_clock(rt, hero):
    """The same, as users meet it: tasks and pauses have one Timers each. With
    ``TASK_HANDLER.clock = Clock()`` and ``clock.advance(10)`` (how Evennia's own tests drive
    time), the delay due at 7 fires before the pause that ends at 5."""
    clock = Clock()
    TASK_HANDLER.clock = clock

    @interactive
    def walk(caller):
        yield 5
        caller.msg("pause over at 5")

    delay(3, hero.msg, "delay at 3")
    walk(hero)
    delay(7, hero.msg, "delay at 7")
    clock.advance(10)
    assert hero.heard.take() == ["delay at 3", "pause over at 5", "delay at 7"]


def test_a_pause_and_delays_due_together_do_not_run_in_scheduling_order(rt, hero):
    """"Calls due at the same time run in the order they were scheduled, as with Twisted's
    own clocks" holds only inside one Timers, and tasks and pauses have one each. A delay, a
    paused command, then another delay, all due at 5: the paused command resumes last. In
    Evennia (and before this change) a pause is a timed call like a delay, so they run in the
    order scheduled; transcripts in virtual time, where equal times are the rule, see the
    difference. One Timers per runtime, shared by the task handler and the driver, fixes it
    for evasync's own calls (for foreign clock calls the docstring should say it does not)."""
    @interactive
    def wait(caller):
        yield 5
        caller.msg("pause")

    delay(5, hero.msg, "delay scheduled first")
    wait(hero)
    delay(5, hero.msg, "delay scheduled last")
    rt.advance(5)
    assert hero.heard.take() == ["delay scheduled first", "pause", "delay scheduled last"]


def test_a_cancelled_clock_call_stops_every_later_timer_forever(rt, hero):
    """If the Timers' one DelayedCall is cancelled from outside (trial's janitor cancels every
    pending call on the reactor after a dirty test; tests often clear a clock this way),
    ``_call`` stays set and inactive: ``at()`` only wakes for an earlier time, so every delay
    and pause due later never fires again in this runtime. Before the shared call, one
    cancelled call lost one task."""
    delay(10, hero.msg, "lost with its call")
    for call in rt.clock.getDelayedCalls():
        call.cancel()
    delay(20, hero.msg, "scheduled afterwards")
    rt.advance(30)
    assert "scheduled afterwards" in hero.heard.take()


# == driver.py: the Deferred handed out, cancellation, CallerGone ===============================

def test_cancelling_an_interactive_deferred_leaves_its_question_eating_the_next_command(rt, hero):
    """``_Run`` is a Deferred without a canceller: ``d.cancel()`` fires it with CancelledError
    but the body runs on. A cancelled question stays queued, the player's next line ("look") is
    taken as its answer, and the body goes on as if answered. Twisted's coroutine Deferreds
    (``Deferred.fromCoroutine``, ``inlineCallbacks``) stop the body on cancel."""
    @interactive
    def confirm(caller):
        answer = yield "Sell the sword?"
        caller.msg(f"sold: {answer}")

    done = confirm(hero)
    done.addErrback(lambda failure: None)
    done.cancel()
    hero.heard.take()
    hero.execute_cmd("look")
    assert not any(line.startswith("sold") for line in hero.heard.take())
    assert not rt.driver.is_asking(hero) and len(rt.driver) == 0


def test_a_coroutine_closed_while_awaiting_another_players_question_leaves_it_asking(rt):
    """The same through the driver itself: an admin's coroutine awaits a question put to a
    player; the admin disconnects, ``_close`` cancels the awaited ``_Run``, which ignores it:
    the player is still asked, and their next command is eaten as the answer."""
    admin, player = create_object(key="Admin"), create_object(key="Player")
    rt.listen(admin)
    heard = rt.listen(player)

    @interactive
    def confirm(caller):
        answer = yield "Accept the ban?"
        caller.msg(f"you answered {answer}")

    @interactive
    async def ban(caller, who):
        await confirm(who)

    ban(admin, player)
    rt.disconnect(admin)
    heard.take()
    player.execute_cmd("look")
    assert heard.take() != ["you answered look"]
    assert not rt.driver.is_asking(player)


def test_a_failure_after_cancel_is_logged_as_cancelled_error_and_the_real_one_is_lost(rt, hero,
                                                                                        logged):
    """``d.cancel()`` once left the body running; when it then failed, the policy logged the
    Deferred's *result*, the CancelledError, and the real KeyError was lost. Now cancelling
    ends the body (so it cannot fail later), and a failure reaching a Deferred that already
    fired is logged as itself, never as the cancellation."""
    @interactive
    def slow(caller):
        yield 5
        raise KeyError("the real problem")

    slow(hero).cancel()
    rt.advance(5)
    assert logged.at(LogLevel.error) == []            # ended at once: nothing failed later

    done = defer.Deferred()
    done.cancel()
    _failures.fail(done, _a_failure("after cancel"), Logger(namespace="review"), "it raised")
    [event] = logged.at(LogLevel.error)
    assert event["log_failure"].type is ValueError


def test_cancelling_a_tasks_deferred_does_not_cancel_the_task(rt):
    """Evennia's ``task.get_deferred()`` is the ``deferLater`` Deferred: cancelling it cancels
    the call. Here the task fires anyway; and if its callback fails, the CancelledError is what
    gets logged (as above)."""
    task = delay(5, record, "fired anyway")
    task.get_deferred().cancel()
    rt.advance(5)
    assert CALLS == []


def test_reload_while_a_coroutine_awaits_run_async_raises_cancelled_error_and_logs_it(rt, hero,
                                                                                       logged):
    """``Runtime._stop`` runs the stop hooks (run_async's runner) before the driver: the
    dropped call's Deferred fails with a plain CancelledError, which is thrown into the
    coroutine at its await. The coroutine sees CancelledError, not the documented CallerGone
    (so ``except CallerGone:`` clean-up does not run), and the driver logs it as an error. An
    async command in the same spot tells the player "'forge' failed with an error
    (CancelledError)" at every reload."""
    seen = []

    @interactive
    async def compute(caller):
        try:
            await run_async(sum, [1, 2, 3], executor="reactor")
        except BaseException as exc:
            seen.append(type(exc))
            raise

    compute(hero)
    rt.reload()
    assert seen == [CallerGone]
    assert logged.at(LogLevel.error) == []


def test_caller_gone_of_an_awaited_run_is_reported_as_an_error(rt, logged):
    """CallerGone is never reported, except when it reaches a coroutine through an ``await``
    on another driven body: the admin's coroutine below fails with the player's CallerGone and
    the driver logs "ban raised" at error level (an async *command* in the same place says
    nothing, because cmdhandler's errback skips CallerGone)."""
    admin, player = create_object(key="Admin"), create_object(key="Player")
    rt.listen(admin)
    rt.listen(player)

    @interactive
    def confirm(caller):
        return (yield "Accept the ban?")

    @interactive
    async def ban(caller, who):
        await confirm(who)

    ban(admin, player)
    rt.disconnect(player)
    assert logged.at(LogLevel.error) == []


def test_an_interactive_body_for_a_deleted_caller_waits_forever(rt):
    """A deletion closes the bodies driven *at that time*; a body started afterwards for the
    deleted object (a non-persistent ``delay(5, ask_something, obj)`` that fires after
    ``obj.delete()``) is queued as a question nobody can answer: it never ends, and the driver
    keeps it, its generator and its caller forever."""
    hero = create_object(key="Hero")

    @interactive
    def confirm(caller):
        return (yield "Still there?")

    hero.delete()
    done = confirm(hero)
    done.addErrback(lambda failure: None)
    assert done.called and len(rt.driver) == 0


def test_await_in_finally_after_caller_gone_cuts_the_clean_up_short_silently(rt, hero, logged):
    """The documented rule is "CallerGone at the pending await, finally blocks run". A
    ``finally`` that awaits (saving progress with ``run_async``) cannot be served once the
    caller left: the body is closed at that await and the rest of the block does not run. That
    must not be silent: a warning names the body and says what happened (and the concept page
    says a finally block runs up to its first await)."""
    @interactive
    async def work(caller):
        try:
            await sleep(100)
        finally:
            await run_async(record, "saved", executor="reactor")
            CALLS.append("clean-up finished")

    work(hero)
    rt.disconnect(hero)
    rt.advance(1)
    [warning] = logged.texts(LogLevel.warn)
    assert "work" in warning and "after it was ended" in warning
    assert "clean-up finished" not in CALLS


# == _failures.py ================================================================================

def _a_failure(text):
    try:
        int(text)
    except ValueError:
        return Failure()


def test_a_failure_logged_at_once_is_reported_again_when_a_callback_is_added_later(levels):
    """``_failures.fail`` (used by the driver, the task handler and run_async) logs a failure
    nobody waits for and clears Twisted's record of it. Any later ``addCallback``/``addBoth``
    that passes the failure on (a callback-only chain, a logging ``addBoth``, chaining into
    another Deferred, a task's Deferred resolving to an already failed run) makes Twisted
    record it again, and at garbage collection it logs "Unhandled error in Deferred" with the
    same failure: reported twice. (Shown on ``fail()`` itself: through the public API the
    Deferred stays alive in a test run, because twisted.logger buffers early events and the
    failure's frames hold the Deferred; in a server that logs to a file it is collected.)"""
    done = defer.Deferred()
    _failures.fail(done, _a_failure("review-marker"), Logger(namespace="review"), "it raised")
    assert len(levels.reports_of("review-marker")) == 1
    done.addCallback(lambda result: result)             # not an errback: the failure passes on
    del done
    gc.collect()
    assert len(levels.reports_of("review-marker")) == 1, levels.reports_of("review-marker")


def test_run_async_docstring_still_says_the_deferred_is_left_holding_none():
    """The new policy keeps the failure in the Deferred for errbacks added later, but
    ``run_async``'s docstring (rendered on the reference page) still says the Deferred is
    "left holding None" and that later callbacks "see None"."""
    module = sys.modules["evasync.run_async"]
    assert "left holding None" not in module.run_async.__doc__


# == objects.py: db containers and attributes ===================================================

def test_saverdict_setdefault_returns_a_detached_default_so_the_append_is_lost(rt, hero):
    """``obj.db.bag.setdefault("potions", []).append("heal")``, the usual idiom, appends to
    the caller's raw list: ``_adopt`` already replaced it in the dict by a saving copy, and
    ``setdefault`` returns the original. The potion is neither in memory nor stored."""
    hero.db.bag = {}
    hero.db.bag.setdefault("potions", []).append("heal")
    assert hero.db.bag == {"potions": ["heal"]}
    rt.reload()
    assert rt.objects.get(hero.id).db.bag == {"potions": ["heal"]}


def test_saverset_in_place_operator_with_a_list_is_silently_ignored(rt, hero):
    """``set.__ior__`` (and ``__iand__``, ``__isub__``, ``__ixor__``) returns NotImplemented
    for a non-set; the wrapper turns that into ``self``, so ``obj.db.tags |= ["b"]`` neither
    raises the TypeError a plain set raises nor adds anything (and still writes the store)."""
    hero.db.tags = {"a"}
    with pytest.raises(TypeError):
        hero.db.tags |= ["b"]


def test_saverset_repr_is_not_a_sets_repr(rt, hero):
    """Lists and dicts print as themselves; a ``db`` set prints ``SaverSet({'a'})``, which is
    what a player sees from ``caller.msg(f"Tags: {caller.db.tags}")`` (Evennia's prints
    ``{'a'}``)."""
    hero.db.tags = {"a"}
    assert repr(hero.db.tags) == "{'a'}"


def test_a_db_attribute_naming_a_deleted_object_locks_the_character_out_after_reload(rt, hero):
    """``hero.db.target = goblin``; the goblin is deleted; after a reload *every* attribute
    of the hero raises LookupError (the handler decodes them all at once), and so does every
    command the player types (the cmdset handler reads ``db._cmdsets``): the player is locked
    out by an ordinary game event. Evennia reads a deleted object back as None. (Older than
    this change, but in the code it touched.)"""
    goblin = create_object(key="Goblin")
    hero.db.target = goblin
    hero.db.hp = 10
    goblin.delete()
    rt.reload()
    hero = rt.objects.get(hero.id)
    assert hero.db.hp == 10
    assert hero.db.target is None
    hero.execute_cmd("help")


# == store.py =====================================================================================

def test_a_symlinked_lock_file_truncates_its_target(tmp_path):
    """``_lock`` opens ``<store>.lock`` with O_CREAT and follows a symlink, then truncates and
    writes the pid: anyone who can create a file beside the store (a shared directory) makes
    the game overwrite any file its user can write (``~/.bashrc``, the game's own code). Open
    it with O_NOFOLLOW (and refuse a lock file that is not a regular file owned by us)."""
    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    store_path = tmp_path / "game.db"
    os.symlink(victim, str(store_path) + ".lock")
    store = Store(store_path)
    try:
        store.conn
    except StoreError:
        pass                                            # refusing is fine; truncating is not
    finally:
        store.close()
    assert victim.read_text() == "precious data\n"


def test_a_hard_link_to_the_store_gets_a_second_owner(tmp_path):
    """The lock file is named after the store's real path, so two hard links to one file
    (``ln game.db backup.db``, or the same file through a bind mount) get two lock files and
    two runtimes on the same tasks, each firing them. Locking the store file itself (flock on
    its own descriptor; SQLite's locks are fcntl locks, independent on Linux) finds it however
    it is named."""
    first = Store(tmp_path / "game.db")
    first.conn
    os.link(tmp_path / "game.db", tmp_path / "linked.db")
    second = Store(tmp_path / "linked.db")
    try:
        with pytest.raises(StoreError, match="in use"):
            second.conn
    finally:
        second.close()
        first.close()


def test_a_forked_child_keeps_the_store_locked_after_the_parent_closes_it(tmp_path):
    """flock belongs to the open file description, which a fork shares: a child forked while
    the store is open (``multiprocessing`` with the default fork start method, a worker pool
    of the game's own) keeps the lock after the parent closes the store, so the parent's next
    runtime (a reload) is refused with "in use by process <its own pid>". An
    ``os.register_at_fork(after_in_child=...)`` that closes the lock descriptor fixes it."""
    store = Store(tmp_path / "game.db")
    store.conn
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # the child: wait until told, then leave
        try:
            os.close(write_end)
            os.read(read_end, 1)
        finally:
            os._exit(0)
    os.close(read_end)
    try:
        store.close()
        again = Store(tmp_path / "game.db")
        try:
            again.conn                                  # StoreError: in use by our own pid
        finally:
            again.close()
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)


def test_a_reload_after_a_chdir_opens_another_store(tmp_path, monkeypatch):
    """``Runtime`` and ``Store`` keep a relative path as given and resolve it at each open:
    after the process changes directory, ``reload()`` opens (and creates) a new empty store
    there and the persistent tasks are not loaded: acknowledged, then not there. Resolve the
    path once, when the runtime is made."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    monkeypatch.chdir(first_dir)
    runtime = Runtime(clock=Clock(), db_path="game.db")
    try:
        with use_runtime(runtime):
            delay(60, record, "keep me", persistent=True)
            monkeypatch.chdir(second_dir)
            assert runtime.reload() == 1
    finally:
        runtime.close()


@pytest.mark.parametrize("folder", ["game#1", "what?"])
def test_count_quarantined_misreads_a_path_with_a_hash_or_question_mark(tmp_path, folder):
    """``count_quarantined`` (``evasync status``) builds ``file:{path}?mode=ro`` without
    quoting: a ``#`` or ``?`` in the path cuts it there, so it reports 0 quarantined rows and,
    the ``mode=ro`` lost with the rest, SQLite *creates* an empty database at the cut path
    (``game`` beside ``game#1``). Build the URI with ``pathlib.Path(path).as_uri()``."""
    folder_path = tmp_path / folder
    folder_path.mkdir()
    store = Store(folder_path / "evasync.db")
    store.conn.execute("INSERT INTO tasks VALUES (1, 0, 'scheduled', 'x', '[]', '{}')")
    store.quarantine_tasks({1: "damaged"}, 0.0)
    store.close()
    before = set(os.listdir(tmp_path))
    assert count_quarantined(folder_path / "evasync.db") == 1
    assert set(os.listdir(tmp_path)) == before


# == run_async.py =================================================================================

UNGUARDED_MODULE = """
from evasync import run_async
from evasync.testing import VirtualRuntime
from tests._run_async_support import add

rt = VirtualRuntime()
done = run_async(add, 2, 3, executor="process")
print("result", rt.wait_for(done, timeout=120), flush=True)
rt.close()
"""


def test_process_executor_from_an_unguarded_python_m_module_hits_the_bootstrapping_error(
        tmp_path):
    """``_script_main()`` only covers ``python game.py``; ``python -m game`` (a ``__main__``
    with a ``__spec__``) is left alone, multiprocessing's workers import the module again by
    name (``init_main_from_name``), it runs its work once more and the pool breaks with the
    bootstrapping RuntimeError that issue 10 says a quick script must never meet. Hide
    ``__main__.__spec__`` as well while workers start."""
    (tmp_path / "quick_game.py").write_text(UNGUARDED_MODULE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    done = subprocess.run([sys.executable, "-m", "quick_game"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert "bootstrapping" not in done.stderr
    assert done.stdout.splitlines() == ["result 5"], done.stderr[-2000:]


def test_workers_skip_main_hides_main_file_from_every_other_thread(rt, tmp_path, monkeypatch):
    """``_workers_skip_main`` deletes ``__main__.__file__`` for the whole process while worker
    processes start: any other thread (a ``run_async`` thread job locating its data with
    ``os.path.dirname(__main__.__file__)``, logging, warnings) sees it missing meanwhile.
    Shown deterministically by looking from another thread at the moment a worker starts."""
    import multiprocessing.spawn as spawn

    script = tmp_path / "quick.py"
    script.write_text("raise SystemExit('a worker must not run the script')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    fake_main.__spec__ = None
    seen = []
    real_preparation_data = spawn.get_preparation_data

    def look_from_another_thread(name):
        looker = threading.Thread(target=lambda: seen.append(
            getattr(sys.modules["__main__"], "__file__", "missing")))
        looker.start()
        looker.join()
        return real_preparation_data(name)

    monkeypatch.setattr(spawn, "get_preparation_data", look_from_another_thread)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    done = run_async(os.getpid, executor="process")
    result = rt.wait_for(done, timeout=120)
    assert isinstance(result, int)
    assert seen and set(seen) == {str(script)}, seen
