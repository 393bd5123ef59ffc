"""Commands, command sets and the command handler, as players see them.

A player types a line with ``alice.types(...)`` and we check what ``alice.heard()``.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer

from evasync import (CmdSet, Command, LockError, MuxCommand, NotPersistableError, YieldError,
                     ask)
from evasync.cmdhandler import match
from evasync.locks import parse_locks

from tests import _commands_support
from tests._commands_support import (BasicCmdSet, CmdDance, CmdPing, DanceCmdSet,
                                     DancerCharacter, Outer, Player, caught_log,
                                     rt)  # noqa: F401  (rt is a fixture)


def cmdset_of(*commands: type[Command]) -> CmdSet:
    """A throw-away command set holding ``commands`` (add it with ``persistent=False``)."""
    cmdset = CmdSet()
    for command in commands:
        cmdset.add(command)
    return cmdset


# -- finding the command ------------------------------------------------------------------------

def test_a_command_is_found_by_its_key_whatever_the_case(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("ping")
    alice.types("PiNg")
    assert alice.heard() == ["pong", "pong"]


def test_an_alias_finds_the_command_too(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("'hello there")          # "'" ends in punctuation: no space needed after it
    alice.types("say   hello there  ")
    assert alice.heard() == ["You say: hello there", "You say: hello there"]


class CmdLook(Command):
    """Look around."""

    key = "look"
    aliases = ["l"]

    def func(self):
        self.msg(f"look: {self.args.strip() or 'around'}")


class CmdLookAt(Command):
    """Look at something closely."""

    key = "look at"

    def func(self):
        self.msg(f"look at: {self.args.strip()}")


def test_the_longest_matching_name_wins(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdLook, CmdLookAt))
    alice.types("look at the tree")
    alice.types("LOOK the tree")
    alice.types("l")
    assert alice.heard() == ["look at: the tree", "look: the tree", "look: around"]


class CmdCraft(MuxCommand):
    """Craft something."""

    key = "craft"

    def func(self):
        self.msg(f"crafting {self.args!r} switches={self.switches}")


def test_a_name_must_end_at_a_space_a_switch_or_the_end_of_the_line(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdCraft))
    alice.types("craft")
    alice.types("craft sword")
    alice.types("craft/quick sword")
    alice.types("crafty sword")          # not "craft" followed by "y sword"
    assert alice.heard() == [
        "crafting '' switches=[]",
        "crafting 'sword' switches=[]",
        "crafting 'sword' switches=['quick']",
        "Command 'crafty' is not available. Did you mean 'craft'? Type 'help' for a list.",
    ]


def test_match_returns_the_class_the_name_as_typed_and_the_rest():
    assert match([CmdLook, CmdLookAt], "Look At  me") == (CmdLookAt, "Look At", "  me")
    assert match([CmdLook], "looking") is None
    assert match([CmdLook], "") is None


class CmdInspect(Command):
    """Show what the command handler set on the command."""

    key = "inspect"
    aliases = ["ins"]

    def func(self):
        self.msg(f"caller={self.caller.key} obj={self.obj.key} cmdstring={self.cmdstring!r} "
                 f"args={self.args!r} raw={self.raw_string!r} session={self.session!r}")


def test_the_command_knows_its_caller_cmdstring_args_and_raw_string(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdInspect))
    alice.types("  INS the  box ")
    assert alice.heard() == ["caller=Alice obj=Alice cmdstring='INS' args=' the  box' "
                             "raw='  INS the  box ' session=None"]


def test_msg_with_a_session_goes_to_that_session_only(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdInspect))
    second = rt.listen(alice.obj)                   # Alice is connected twice
    alice.obj.execute_cmd("inspect", session=second)
    assert alice.heard() == []
    assert second.take() == [
        f"caller=Alice obj=Alice cmdstring='inspect' args='' raw='inspect' session={second!r}"]


def test_an_empty_line_does_nothing(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("")
    alice.types("   ")
    assert alice.heard() == []


def test_a_command_of_a_later_cmdset_overrides_one_with_the_same_key(rt):
    class CmdLoudPing(Command):
        key = "ping"

        def func(self):
            self.msg("PONG!")

    alice = Player(rt, "Alice", BasicCmdSet, cmdset_of(CmdLoudPing))
    alice.types("ping")
    assert alice.heard() == ["PONG!"]


# -- unknown commands ---------------------------------------------------------------------------

def test_an_unknown_command_gets_a_helpful_line_with_a_suggestion(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("pnig now")
    assert alice.heard() == [
        "Command 'pnig' is not available. Did you mean 'ping'? Type 'help' for a list."]


def test_an_unknown_command_with_nothing_close_gets_no_suggestion(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("xyzzy")
    assert alice.heard() == ["Command 'xyzzy' is not available. Type 'help' for a list."]


def test_a_player_without_commands_still_has_help(rt):
    alice = Player(rt, "Alice")
    alice.types("hlep")
    assert alice.heard() == [
        "Command 'hlep' is not available. Did you mean 'help'? Type 'help' for a list."]


# -- locks --------------------------------------------------------------------------------------

class CmdDig(Command):
    """Dig a new room (builders only)."""

    key = "dig"
    locks = "cmd:perm(Builder)"

    def func(self):
        self.msg("You dig a new room.")


class CmdShutdown(Command):
    """Shut the server down."""

    key = "shutdown"
    locks = "cmd:superuser()"

    def func(self):
        self.msg("Shutting down.")


def test_cmd_all_lets_everyone_in(rt):
    class CmdOpen(Command):
        key = "open"
        locks = "cmd:all()"

        def func(self):
            self.msg("opened")

    alice = Player(rt, "Alice", cmdset_of(CmdOpen))
    alice.types("open")
    assert alice.heard() == ["opened"]


@pytest.mark.parametrize("permissions, allowed", [
    (None, False),
    ([], False),
    (["Player"], False),
    (["Helper"], False),
    (["Builder"], True),
    (["builder"], True),          # case does not matter
    (["Admin"], True),            # a higher permission implies the lower ones
    (["Developer"], True),
    ("Builder", True),            # one name, not a list of letters
    ("Bdeilru", False),
])
def test_perm_follows_the_permission_hierarchy(rt, permissions, allowed):
    alice = Player(rt, "Alice", cmdset_of(CmdDig))
    alice.obj.db.permissions = permissions
    alice.types("dig")
    expected = "You dig a new room." if allowed else "Permission denied: you are not allowed to use 'dig'."
    assert alice.heard() == [expected]


def test_a_superuser_passes_every_lock(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdDig, CmdShutdown))
    alice.types("shutdown")
    alice.obj.db.superuser = True
    alice.types("dig")
    alice.types("shutdown")
    assert alice.heard() == ["Permission denied: you are not allowed to use 'shutdown'.", "You dig a new room.",
                             "Shutting down."]


def test_a_permission_outside_the_hierarchy_must_be_held_exactly():
    check = parse_locks("cmd:perm(Gardener)")["cmd"]

    class Holder:
        class db:
            permissions = ["gardener"]
            superuser = False

    class Other:
        class db:
            permissions = ["Developer"]
            superuser = False

    assert check(Holder) is True
    assert check(Other) is False


@pytest.mark.parametrize("lockstring, perms, allowed", [
    ("cmd:perm(Admin) or perm(Gardener)", ["Gardener"], True),
    ("cmd:perm(Builder) and perm(Gardener)", ["Builder"], False),
    ("cmd:perm(Builder) and perm(Gardener)", ["Admin", "Gardener"], True),
    ("cmd:not perm(Builder)", ["Player"], True),
    ("cmd:not perm(Builder)", ["Admin"], False),
    ("cmd:none()", ["Developer"], False),
    ("cmd:false() or true()", [], True),
    ("edit:none();cmd:all()", [], True),
    ("", [], True),
])
def test_lock_expressions_combine_with_and_or_not(lockstring, perms, allowed):
    class Someone:
        class db:
            permissions = perms
            superuser = False

    lock = parse_locks(lockstring).get("cmd", lambda obj: True)
    assert lock(Someone) is allowed


@pytest.mark.parametrize("lockstring, complaint", [
    ("cmd:perm(Builder) or sueruser()", "unknown lock function 'sueruser'"),
    ("cmd all()", "not of the form type:expression"),
    ("cmd:", "not of the form type:expression"),
    ("cmd:perm()", "takes 1 argument"),
    ("cmd:all(x)", "takes 0 argument"),
    ("cmd:perm(Builder", "cannot read"),
    ("cmd:(perm(Admin) or all())", "cannot read"),
])
def test_an_invalid_lock_string_is_an_error_when_the_class_is_created(lockstring, complaint):
    with pytest.raises(LockError, match=rf"CmdBadLock.*{complaint}"):
        class CmdBadLock(Command):
            key = "bad"
            locks = lockstring


def test_a_lock_that_is_not_a_string_is_an_error_too():
    with pytest.raises(LockError, match="must be a string"):
        class CmdBadLock(Command):
            key = "bad"
            locks = ["cmd:all()"]


def test_a_lock_error_is_also_a_value_error():
    assert issubclass(LockError, ValueError)


def test_a_locked_command_is_neither_suggested_nor_listed_in_help(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdDig, CmdDance))
    alice.types("dug")
    alice.types("help")
    heard = alice.heard()
    assert heard[0] == "Command 'dug' is not available. Type 'help' for a list."
    assert not any("dig" in line for line in heard[1:])
    alice.types("help dig")
    assert alice.heard() == ["No help for 'dig'. Type 'help' for a list."]


# -- key and alias declarations -----------------------------------------------------------------

def test_keys_and_aliases_are_stored_lower_case_and_stripped():
    class CmdShout(Command):
        key = " Shout "
        aliases = ["YELL", "Scream "]

    assert CmdShout.key == "shout"
    assert CmdShout.aliases == ("yell", "scream")


@pytest.mark.parametrize("attrs, complaint", [
    ({"key": 5}, "key must be a string"),
    ({"key": "x", "aliases": ["y", 2]}, "aliases must be a list of strings"),
])
def test_bad_keys_and_aliases_are_refused_at_class_creation(attrs, complaint):
    with pytest.raises(TypeError, match=complaint):
        type("CmdBad", (Command,), attrs)


def test_a_cmdset_refuses_what_is_not_a_command():
    cmdset = CmdSet()
    with pytest.raises(TypeError, match="not a Command subclass"):
        cmdset.add(str)
    with pytest.raises(ValueError, match="has no key"):
        cmdset.add(Command)


def test_a_cmdset_accepts_an_instance_and_removes_by_key():
    cmdset = cmdset_of(CmdPing())
    assert [c.key for c in cmdset] == ["ping"]
    cmdset.remove("PING")
    assert list(cmdset) == []
    assert "ping" not in repr(cmdset)


# -- hooks --------------------------------------------------------------------------------------

class CmdHooked(Command):
    """Record every hook call on the caller's ndb.hooks."""

    key = "hooked"

    def note(self, what):
        self.caller.ndb.hooks = (self.caller.ndb.hooks or []) + [what]

    def at_pre_cmd(self):
        self.note("at_pre_cmd")
        return self.args.strip() == "abort"

    def parse(self):
        self.note("parse")
        self.word = self.args.strip()

    def func(self):
        self.note(f"func({self.word})")
        yield 5
        self.note("func resumed")

    def at_post_cmd(self):
        self.note("at_post_cmd")


def test_hooks_run_in_order_and_at_post_cmd_waits_for_the_generator(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdHooked))
    done = alice.types("hooked now")
    assert alice.obj.ndb.hooks == ["at_pre_cmd", "parse", "func(now)"]
    assert not done.called
    rt.advance(5)
    assert alice.obj.ndb.hooks == ["at_pre_cmd", "parse", "func(now)", "func resumed",
                                   "at_post_cmd"]
    assert done.called


def test_a_true_at_pre_cmd_stops_the_command(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdHooked))
    alice.types("hooked abort")
    rt.advance(5)
    assert alice.obj.ndb.hooks == ["at_pre_cmd"]


def test_a_plain_func_is_followed_by_at_post_cmd_at_once(rt):
    class CmdQuick(CmdHooked):
        key = "quick"

        def func(self):
            self.note("func")

    alice = Player(rt, "Alice", cmdset_of(CmdQuick))
    assert alice.types("quick").called
    assert alice.obj.ndb.hooks == ["at_pre_cmd", "parse", "func", "at_post_cmd"]


def test_a_command_without_func_says_so(rt):
    class CmdTodo(Command):
        key = "todo"

    alice = Player(rt, "Alice", cmdset_of(CmdTodo))
    alice.types("todo")
    assert alice.heard() == ["Command 'todo' does nothing yet (it has no func())."]


# -- MuxCommand ---------------------------------------------------------------------------------

class CmdGive(MuxCommand):
    """
    Give things to people.

    Usage:
      give[/switches] <thing>[, <thing>...] = <person>[, <person>...]
    """

    key = "give"

    def func(self):
        self.caller.ndb.parsed = {name: getattr(self, name) for name in (
            "raw", "switches", "args", "arglist", "lhs", "rhs", "lhslist", "rhslist")}


def parsed(rt, line, command=CmdGive):
    alice = Player(rt, "Alice", cmdset_of(command))
    alice.types(line)
    return alice.obj.ndb.parsed, alice.heard()


def test_mux_parses_switches_lhs_and_rhs_into_lists(rt):
    result, _ = parsed(rt, "give/Quiet/fast  sword , shield = Bob,Anna ")
    assert result == {
        "raw": "/Quiet/fast  sword , shield = Bob,Anna",
        "switches": ["Quiet", "fast"],  # case preserved, as upstream
        "args": "sword , shield = Bob,Anna",
        "arglist": ["sword", ",", "shield", "=", "Bob,Anna"],
        "lhs": "sword , shield",
        "rhs": "Bob,Anna",
        "lhslist": ["sword", "shield"],
        "rhslist": ["Bob", "Anna"],
    }


def test_mux_without_equals_has_no_rhs(rt):
    result, _ = parsed(rt, "give apple")
    assert (result["lhs"], result["rhs"], result["lhslist"], result["rhslist"]) == \
        ("apple", None, ["apple"], [])


def test_mux_with_an_empty_right_side_has_an_empty_rhs(rt):
    result, _ = parsed(rt, "give apple =")
    assert (result["lhs"], result["rhs"]) == ("apple", "")


def test_mux_with_nothing_after_the_name(rt):
    result, _ = parsed(rt, "give")
    # Upstream's lists: an empty left side is one empty item; no delimiter, no right side.
    assert result["switches"] == [] and result["args"] == ""
    assert (result["lhslist"], result["rhslist"]) == ([""], [])


def test_mux_switches_alone_leave_no_arguments(rt):
    result, _ = parsed(rt, "give/all")
    assert (result["switches"], result["args"]) == (["all"], "")


def test_a_slash_after_a_space_is_an_argument_not_a_switch(rt):
    result, _ = parsed(rt, "give /all")
    assert (result["switches"], result["args"]) == ([], "/all")


class CmdSpell(MuxCommand):
    """Cast a spell."""

    key = "spell"
    switch_options = ("fire", "frost", "heal")
    rhs_split = ("=", " at ")

    def func(self):
        self.caller.ndb.parsed = {"switches": self.switches, "lhs": self.lhs, "rhs": self.rhs}


def test_switch_options_accept_unique_prefixes_and_report_the_rest(rt):
    result, heard = parsed(rt, "spell/h/f/dark/FROST bolt", CmdSpell)
    assert result["switches"] == ["heal", "frost"]
    assert heard == [
        "spell: ambiguous switch /f (/fire or /frost?) ignored.",
        "spell: unknown switch /dark ignored; valid: /fire /frost /heal",
    ]


def test_rhs_split_may_name_other_delimiters_tried_in_order(rt):
    result, _ = parsed(rt, "spell/fire bolt at the troll", CmdSpell)
    assert (result["lhs"], result["rhs"]) == ("bolt", "the troll")
    result, _ = parsed(rt, "spell/fire bolt at the troll = now", CmdSpell)
    assert (result["lhs"], result["rhs"]) == ("bolt at the troll", "now")


# -- help ---------------------------------------------------------------------------------------

def test_help_lists_the_available_commands_with_their_first_help_line(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("help")
    assert alice.heard() == [
        "Available commands:",
        "  help    Show the available commands, or one command's help.",
        "  ping    Answer pong.",
        "  say     Say something out loud.",
        "  snooze  Doze off for five seconds.",
        "Type 'help <command>' for more.",
    ]


def test_help_on_a_command_shows_its_docstring(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("help SAY")
    assert alice.heard() == ["Help for 'say' (aliases: '):", "Say something out loud.", "",
                             "Usage:", "  say <words>"]


def test_help_finds_a_command_by_alias_and_has_an_alias_of_its_own(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("? '")
    assert alice.heard()[0] == "Help for 'say' (aliases: '):"


def test_help_on_something_unknown(rt):
    alice = Player(rt, "Alice", BasicCmdSet)
    alice.types("help fly")
    assert alice.heard() == ["No help for 'fly'. Type 'help' for a list."]


def test_a_command_without_docstring_says_it_has_no_help(rt):
    class CmdMystery(Command):
        key = "mystery"

    alice = Player(rt, "Alice", cmdset_of(CmdMystery))
    alice.types("help mystery")
    assert alice.heard() == ["Help for 'mystery':", "(no help written for this command)"]


# -- errors -------------------------------------------------------------------------------------

class CmdBoom(Command):
    """Divide by zero, now or later."""

    key = "boom"

    def func(self):
        if self.args.strip() == "later":
            return self.later()
        return 1 / 0

    def later(self):
        yield 3
        {}["missing"]


def test_an_exception_is_logged_with_its_traceback_and_the_caller_gets_one_line(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdBoom), BasicCmdSet)
    with caught_log() as log:
        alice.types("boom")
    assert alice.heard() == [
        "Sorry, 'boom' failed with an error (ZeroDivisionError); it has been logged."]
    assert log.failure_types() == [ZeroDivisionError]
    event = log.failures()[0]
    assert "in func" in event["log_failure"].getTraceback()
    assert event["line"] == "boom" and event["caller"] is alice.obj
    alice.types("ping")                      # Alice can go on playing
    assert alice.heard() == ["pong"]


def test_an_exception_after_a_yield_is_reported_the_same_way(rt):
    alice, bob = Player(rt, "Alice", cmdset_of(CmdBoom)), Player(rt, "Bob", BasicCmdSet)
    with caught_log() as log:
        alice.types("boom later")
        bob.types("snooze")
        rt.advance(3)
        assert alice.heard() == [
            "Sorry, 'boom' failed with an error (KeyError); it has been logged."]
        rt.advance(2)
    assert log.failure_types() == [KeyError]
    assert "in later" in log.failures()[0]["log_failure"].getTraceback()
    assert bob.heard() == ["You doze off.", "You wake up."]   # nothing happened to Bob


@pytest.mark.parametrize("hook", ["at_pre_cmd", "parse", "at_post_cmd"])
def test_an_exception_in_any_hook_is_reported(rt, hook):
    def broken(self):
        raise RuntimeError(f"{hook} broke")

    CmdFragile = type("CmdFragile", (CmdPing,), {"key": "fragile", hook: broken})
    alice = Player(rt, "Alice", cmdset_of(CmdFragile))
    with caught_log() as log:
        alice.types("fragile")
    assert alice.heard()[-1] == \
        "Sorry, 'fragile' failed with an error (RuntimeError); it has been logged."
    assert log.failure_types() == [RuntimeError]


def test_a_wrong_yield_in_a_command_can_be_caught(rt):
    class CmdCareful(Command):
        key = "careful"

        def func(self):
            try:
                yield "5 seconds".encode()
            except YieldError:
                self.msg("Oops, seconds must be a number.")

    alice = Player(rt, "Alice", cmdset_of(CmdCareful))
    alice.types("careful")
    assert alice.heard() == ["Oops, seconds must be a number."]


def test_an_uncaught_wrong_yield_in_a_command_is_logged_naming_the_type(rt):
    class CmdSloppy(Command):
        key = "sloppy"

        def func(self):
            yield [10]

    alice = Player(rt, "Alice", cmdset_of(CmdSloppy))
    with caught_log() as log:
        alice.types("sloppy")
    assert alice.heard() == [
        "Sorry, 'sloppy' failed with an error (YieldError); it has been logged."]
    assert log.failure_types() == [YieldError]
    assert "builtins.list" in str(log.failures()[0]["log_failure"].value)


# -- time: pauses and questions in commands -----------------------------------------------------

def test_one_players_pause_never_delays_another_players_command(rt):
    alice, bob = Player(rt, "Alice", BasicCmdSet), Player(rt, "Bob", BasicCmdSet)
    alice.types("snooze")
    bob.types("ping")
    assert bob.heard() == ["pong"]
    assert alice.heard() == ["You doze off."]
    alice.types("ping")                      # nor her own next command
    assert alice.heard() == ["pong"]
    rt.advance(5)
    assert alice.heard() == ["You wake up."]


def test_two_players_pausing_at_once_each_wake_at_their_own_time(rt):
    alice, bob = Player(rt, "Alice", BasicCmdSet), Player(rt, "Bob", BasicCmdSet)
    alice.types("snooze")
    rt.advance(2)
    bob.types("snooze")
    rt.advance(3)
    assert (alice.heard(), bob.heard()) == (["You doze off.", "You wake up."], ["You doze off."])
    rt.advance(2)
    assert bob.heard() == ["You wake up."]


class CmdSell(Command):
    """Sell something, if you agree to the price."""

    key = "sell"

    def func(self):
        thing = self.args.strip()
        answer = yield ask(f"10 gold for {thing}?", timeout=15, default="no")
        self.msg(f"{thing}: {'sold' if answer == 'yes' else 'kept'}")


def test_while_a_command_waits_for_an_answer_even_a_command_name_is_the_answer(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdSell))
    alice.types("sell boots")
    alice.types("sell map")                  # the answer to "10 gold for boots?"
    alice.types("sell map")                  # now a command again
    alice.types("  yes ")
    assert alice.heard() == ["10 gold for boots?", "boots: kept", "10 gold for map?",
                             "map: sold"]


class CmdRegister(Command):
    """Ask three questions in a row."""

    key = "register"

    def func(self):
        name = yield "Name?"
        race = yield "Race?"
        ready = yield ask("Ready?", timeout=10, default="yes")
        self.msg(f"{name} the {race}, ready: {ready}")


def test_a_command_can_ask_several_questions_in_turn(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdRegister))
    alice.types("register")
    alice.types(" Alice ")
    alice.types("elf")
    rt.advance(10)
    assert alice.heard() == ["Name?", "Race?", "Ready?", "Alice the elf, ready: yes"]


def test_a_commands_question_times_out_with_the_default(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdSell))
    alice.types("sell coin")
    rt.advance(15)
    assert alice.heard() == ["10 gold for coin?", "coin: kept"]


def test_one_players_answer_never_goes_to_another_players_question(rt):
    anna, bob = Player(rt, "Anna", cmdset_of(CmdSell)), Player(rt, "Bob", cmdset_of(CmdSell))
    anna.types("sell boots")
    bob.types("sell map")
    bob.types("no")
    anna.types("yes")
    assert anna.heard() == ["10 gold for boots?", "boots: sold"]
    assert bob.heard() == ["10 gold for map?", "map: kept"]


# -- leaving and reloading ----------------------------------------------------------------------

class CmdMeditate(Command):
    """Meditate for a minute; being interrupted is fine."""

    key = "meditate"

    def func(self):
        self.caller.ndb.meditating = True
        try:
            yield 60
            self.msg("You feel enlightened.")
        finally:
            self.caller.ndb.meditating = False

    def at_post_cmd(self):
        self.caller.ndb.post_ran = True


@pytest.mark.parametrize("leave", ["disconnect", "delete"])
def test_leaving_closes_a_paused_command_and_its_finally_runs(rt, leave):
    alice, bob = Player(rt, "Alice", cmdset_of(CmdMeditate)), Player(rt, "Bob", BasicCmdSet)
    alice.types("meditate")
    bob.types("snooze")
    with caught_log() as log:
        if leave == "disconnect":
            rt.disconnect(alice.obj)
        else:
            alice.obj.delete()
    assert alice.obj.ndb.meditating is False
    assert alice.obj.ndb.post_ran is None    # the command did not finish: no at_post_cmd
    assert log.failures() == []
    rt.advance(60)
    assert alice.heard() == []
    assert bob.heard() == ["You doze off.", "You wake up."]


def test_a_waiting_question_is_dropped_on_disconnect_so_the_next_line_is_a_command(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdSell), BasicCmdSet)
    alice.types("sell boots")
    rt.disconnect(alice.obj)
    alice.screen = rt.listen(alice.obj)      # she comes back
    alice.types("ping")
    assert alice.heard() == ["pong"]


def test_reload_closes_paused_commands_cleanly(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdMeditate))
    old = alice.obj
    alice.types("meditate")
    with caught_log() as log:
        rt.reload()
        rt.advance(60)
    assert old.ndb.meditating is False
    assert alice.heard() == []               # no error line, no late "enlightened"
    assert log.failures() == []


# -- cmdsets on objects -------------------------------------------------------------------------

def test_a_persistent_cmdset_is_back_after_a_reload(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(DanceCmdSet, persistent=True)
    rt.reload()
    alice.refetch()
    assert alice.obj.cmdset.has(DanceCmdSet)
    alice.types("dance")
    assert alice.heard() == ["You dance."]


def test_a_cmdset_can_be_added_by_its_import_path(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add("tests._commands_support.DanceCmdSet", persistent=True)
    rt.reload()
    alice.refetch()
    alice.types("dance")
    assert alice.heard() == ["You dance."]


def test_a_nested_cmdset_class_is_stored_and_found_again(rt):
    alice = Player(rt, "Alice")
    with caught_log() as log:
        alice.obj.cmdset.add(Outer.NestedCmdSet, persistent=True)
        rt.reload()
        alice.refetch()
        alice.types("dance")
    assert alice.heard() == ["You dance."]
    assert [e for e in log.events if e.get("log_level") and e["log_level"].name == "warn"] == []


def test_a_cmdset_is_not_persistent_unless_asked_as_in_evennia(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(DanceCmdSet)
    alice.types("dance")
    rt.reload()
    alice.refetch()
    alice.types("dance")
    assert alice.heard() == ["You dance.",
                             "Command 'dance' is not available. Type 'help' for a list."]


def test_a_removed_cmdset_stays_removed_after_a_reload(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(DanceCmdSet, persistent=True)
    assert alice.obj.cmdset.remove(DanceCmdSet) is True
    assert alice.obj.cmdset.remove(DanceCmdSet) is False
    rt.reload()
    alice.refetch()
    assert not alice.obj.cmdset.has(DanceCmdSet)


def test_adding_the_same_cmdset_twice_keeps_one(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(DanceCmdSet)
    alice.obj.cmdset.add(DanceCmdSet)
    assert [type(s) for s in alice.obj.cmdset.all()] == [DanceCmdSet]


def test_a_cmdset_that_cannot_be_found_again_is_refused_unless_not_persistent(rt):
    class LocalCmdSet(CmdSet):
        def at_cmdset_creation(self):
            self.add(CmdDance)

    alice = Player(rt, "Alice")
    with pytest.raises(NotPersistableError, match="persistent=False"):
        alice.obj.cmdset.add(LocalCmdSet, persistent=True)
    assert alice.obj.cmdset.all() == []       # refused means not added at all
    alice.obj.cmdset.add(LocalCmdSet)         # Evennia code adds local sets like this
    alice.types("dance")
    assert alice.heard() == ["You dance."]


def test_a_typeclass_default_cmdsets_are_always_there(rt):
    alice = Player(rt, "Alice", typeclass=DancerCharacter)
    alice.types("dance")
    rt.reload()
    alice.refetch()
    alice.types("dance")
    assert alice.heard() == ["You dance.", "You dance."]


def test_a_stored_cmdset_that_no_longer_imports_is_skipped_and_logged(rt, monkeypatch):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(_commands_support.VanishingCmdSet, persistent=True)
    alice.obj.cmdset.add(DanceCmdSet, persistent=True)
    monkeypatch.delattr(_commands_support, "VanishingCmdSet")   # the code was changed
    rt.reload()
    alice.refetch()
    with caught_log() as log:
        alice.types("dance")
    assert alice.heard() == ["You dance."]                  # the other sets still load
    errors = [e for e in log.events if e.get("log_level") and e["log_level"].name == "error"]
    assert len(errors) == 1 and "VanishingCmdSet" in errors[0]["cmdset"]


def test_adding_something_that_is_not_a_cmdset_is_refused(rt):
    alice = Player(rt, "Alice")
    with pytest.raises(TypeError, match="not a CmdSet subclass"):
        alice.obj.cmdset.add(CmdPing)


def test_a_command_that_deletes_its_own_caller_and_then_fails_is_still_logged(rt):
    class CmdVanish(Command):
        key = "vanish"

        def func(self):
            self.caller.delete()
            raise RuntimeError("gone and broken")

    alice = Player(rt, "Alice", cmdset_of(CmdVanish))
    with caught_log() as log:
        alice.types("vanish")
    assert log.failure_types() == [RuntimeError]
    assert alice.heard() == []


# -- a func() that returns a Deferred, as upstream code may -------------------------------------

class CmdFetch(CmdHooked):
    """Wait for a Deferred the test fires by hand."""

    key = "fetch"
    pending: list = []

    def func(self):
        self.note("func")
        d = defer.Deferred()
        CmdFetch.pending.append(d)
        return d


def test_a_returned_deferred_is_waited_for_before_at_post_cmd(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdFetch))
    CmdFetch.pending.clear()
    done = alice.types("fetch")
    assert alice.obj.ndb.hooks == ["at_pre_cmd", "parse", "func"] and not done.called
    CmdFetch.pending[0].callback("data")
    assert alice.obj.ndb.hooks[-1] == "at_post_cmd" and done.called


def test_a_returned_deferred_that_fails_is_reported(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdFetch))
    CmdFetch.pending.clear()
    with caught_log() as log:
        alice.types("fetch")
        CmdFetch.pending[0].errback(ConnectionError("no route"))
    assert alice.heard() == [
        "Sorry, 'fetch' failed with an error (ConnectionError); it has been logged."]
    assert log.failure_types() == [ConnectionError]
    assert "at_post_cmd" not in alice.obj.ndb.hooks


def test_a_locked_command_never_hides_one_the_player_may_use(rt):
    class CmdLookAtSecrets(CmdLookAt):
        key = "look at"
        locks = "cmd:perm(Builder)"

    alice = Player(rt, "Alice", cmdset_of(CmdLook, CmdLookAtSecrets))
    alice.types("look at the tree")          # falls back to "look" with "at the tree"
    alice.obj.db.permissions = ["Builder"]
    alice.types("look at the tree")
    assert alice.heard() == ["look: at the tree", "look at: the tree"]


def test_aliases_may_be_one_comma_separated_string_as_upstream_allows():
    class CmdHit(Command):
        key = "hit"
        aliases = "Stab, slash ,"

    assert CmdHit.aliases == ("stab", "slash")


def test_a_default_cmdset_that_does_not_import_is_logged_and_the_others_still_work(rt):
    from twisted.logger import globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        hero = rt.objects.create(_commands_support.BrokenDefaultsHero, key="Hero")
        heard = rt.listen(hero)
        hero.execute_cmd("help")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert heard.take()[0] == "Available commands:"
    assert any("no_such_module_here" in repr(e.get("cmdset")) for e in events)


def test_a_command_that_runs_during_questions_is_not_taken_for_an_answer(rt):
    class CmdLeave(Command):
        key = "leave"
        runs_during_questions = True

        def func(self):
            self.msg("You leave.")

    class CmdAsk(Command):
        key = "ask"

        def func(self):
            answer = yield "Sure?"
            self.msg(f"Answered {answer}.")

    class Sets(CmdSet):
        def at_cmdset_creation(self):
            self.add(CmdLeave)
            self.add(CmdAsk)

    alice = Player(rt, "Alice", Sets)
    alice.types("ask")
    alice.types("leave")          # runs; the question still waits
    alice.types("look")           # any other line is the answer
    assert alice.heard() == ["Sure?", "You leave.", "Answered look."]


def test_during_a_question_only_the_bare_name_of_an_allowed_command_runs(rt):
    """What Command.runs_during_questions says: the whole line, in any case and with the spaces
    around it ignored, must be the key or an alias, and the caller must pass the cmd lock."""
    class CmdLeave(Command):
        key = "leave"
        aliases = ["go"]
        runs_during_questions = True

        def func(self):
            self.msg("You leave.")

    class CmdLocked(Command):
        key = "shutdown"
        locks = "cmd:superuser()"
        runs_during_questions = True

        def func(self):
            self.msg("Shutting down.")

    class CmdAsk(Command):
        key = "ask"

        def func(self):
            while True:
                answer = yield "Sure?"
                self.msg(f"Answered {answer}.")

    alice = Player(rt, "Alice", cmdset_of(CmdLeave, CmdLocked, CmdAsk))
    alice.types("ask")
    for line in ("  LEAVE  ", "Go", "leave now", "shutdown", "help"):
        alice.types(line)
    assert alice.heard() == ["Sure?", "You leave.", "You leave.", "Answered leave now.",
                             "Sure?", "Answered shutdown.", "Sure?", "Answered help.", "Sure?"]


def test_add_default_puts_the_base_set_first_stores_it_and_replaces_an_older_default(rt):
    alice = Player(rt, "Alice")
    alice.obj.cmdset.add(DanceCmdSet, persistent=True)
    alice.obj.cmdset.add_default("tests._commands_support.VanishingCmdSet")
    assert type(alice.obj.cmdset.all()[0]) is _commands_support.VanishingCmdSet
    alice.obj.cmdset.add_default(BasicCmdSet)
    rt.reload()
    alice.refetch()
    kinds = [type(s) for s in alice.obj.cmdset.all()]
    assert kinds == [BasicCmdSet, DanceCmdSet]       # the old default replaced, order kept


def test_add_default_stays_first_after_a_reload_before_the_typeclass_defaults(rt):
    alice = Player(rt, "Alice", typeclass=_commands_support.DancerCharacter)
    alice.obj.cmdset.add_default(BasicCmdSet)
    before = [type(s) for s in alice.obj.cmdset.all()]
    rt.reload()
    alice.refetch()
    assert [type(s) for s in alice.obj.cmdset.all()] == before == [BasicCmdSet, DanceCmdSet]


def test_only_the_lock_of_the_command_typed_is_checked(rt):
    checked = []

    class CmdGuarded(Command):
        key = "guarded"

        @classmethod
        def access(cls, accessor, access_type="cmd"):
            checked.append(cls.key)
            return True

    class CmdOther(CmdGuarded):
        key = "other"

    alice = Player(rt, "Alice", cmdset_of(CmdGuarded, CmdOther, CmdLook))
    alice.types("look")
    alice.types("other")
    assert checked == ["other"]
    assert alice.heard() == ["look: around", "Command 'other' does nothing yet (it has no func())."]


def test_a_command_added_to_a_set_already_in_use_is_found_and_a_removed_one_is_not(rt):
    cmdset = cmdset_of(CmdLook)
    alice = Player(rt, "Alice", cmdset)
    alice.types("dance")
    cmdset.add(CmdDance)
    alice.types("dance")
    cmdset.remove(CmdDance)
    alice.types("dance")
    heard = alice.heard()
    assert heard[0].startswith("Command 'dance' is not available.")
    assert heard[1] != heard[0] and not heard[1].startswith("Command")
    assert heard[2] == heard[0]


def test_a_cmdset_added_or_removed_on_the_object_changes_what_is_found(rt):
    alice = Player(rt, "Alice", cmdset_of(CmdLook))
    bob = Player(rt, "Bob", cmdset_of(CmdLook))
    alice.obj.cmdset.add(DanceCmdSet, persistent=False)
    alice.types("dance")
    bob.types("dance")
    alice.obj.cmdset.remove(DanceCmdSet)
    alice.types("dance")
    danced, refused = alice.heard()
    assert not danced.startswith("Command") and refused.startswith("Command 'dance'")
    assert bob.heard()[0].startswith("Command 'dance' is not available.")
