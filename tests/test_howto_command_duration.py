"""The "Commands that take time" howto's commands, played in virtual time."""

from __future__ import annotations

import pathlib

import pytest

from evasync import NotPersistableError
from howtos import command_duration
from howtos.command_duration import (BREW_TIME, COOKING_TIME, CRAFT_STEP, FIGHT_LENGTH,
                                     MAX_STROKES, TOLL_GAP, CommandDurationCmdSet)

from tests._commands_support import Player, caught_log, rt  # noqa: F401  (rt is a fixture)


@pytest.fixture
def hero(rt):
    """A player with the howto's commands, kept across reloads."""
    return Player(rt, "Hero", CommandDurationCmdSet, persistent=True)


def test_the_howtos_constants_are_the_ones_its_page_talks_about():
    assert (COOKING_TIME, TOLL_GAP, MAX_STROKES, CRAFT_STEP, FIGHT_LENGTH, BREW_TIME) == (
        10, 3, 12, 10, 20, 60)


# -- wait: a yield in func() --------------------------------------------------------------------

def test_wait_pauses_ten_seconds_and_other_commands_answer_meanwhile(rt, hero):
    hero.types("wait")
    assert hero.heard() == ["You start counting to ten..."]
    rt.advance(5)
    hero.types("order rabbit stew")
    assert hero.heard() == ["You order rabbit stew. The cook disappears into the kitchen."]
    rt.advance(4.9)
    assert hero.heard() == []
    rt.advance(0.1)
    assert hero.heard() == ["... ten. You stop counting."]
    rt.advance(5)
    assert hero.heard() == ["The cook brings your rabbit stew, steaming hot."]


def test_one_player_waiting_never_holds_up_another(rt):
    anna = Player(rt, "Anna", CommandDurationCmdSet)
    bob = Player(rt, "Bob", CommandDurationCmdSet)
    anna.types("wait")
    bob.types("bigswing troll")
    assert bob.heard() == ["You put all your weight into a swing at troll and stumble off balance."]
    rt.advance(8)
    assert bob.heard() == ["You find your footing again."]
    assert anna.heard() == ["You start counting to ten..."]
    rt.advance(2)
    assert anna.heard() == ["... ten. You stop counting."]


# -- order and toll: delay() and a chain of delays ---------------------------------------------

def test_order_without_a_dish_explains_its_usage(hero):
    hero.types("order")
    assert hero.heard() == ["Order what? Usage: order <dish>"]


def test_an_order_arrives_ten_seconds_later(rt, hero):
    hero.types("order fish pie")
    hero.heard()
    rt.advance(9.99)
    assert hero.heard() == []
    rt.advance(0.01)
    assert hero.heard() == ["The cook brings your fish pie, steaming hot."]


def test_toll_rings_three_strokes_three_seconds_apart(rt, hero):
    hero.types("toll")
    assert hero.heard() == ["You grip the bell rope and pull."]
    timeline = []
    for _ in range(12):
        rt.advance(1)
        timeline += [(rt.now, line) for line in hero.heard()]
    assert timeline == [(3, "BONG (1 of 3)"), (6, "BONG (2 of 3)"), (9, "BONG (3 of 3)"),
                        (9, "The last stroke hums away over the rooftops.")]


def test_toll_rings_as_many_strokes_as_asked(rt, hero):
    hero.types("toll 12")
    rt.advance(12 * TOLL_GAP)
    heard = hero.heard()
    assert heard[0] == "You grip the bell rope and pull."
    assert heard[1:] == [f"BONG ({n} of 12)" for n in range(1, 13)] + [
        "The last stroke hums away over the rooftops."]


@pytest.mark.parametrize("typed", ["toll 0", "toll 13", "toll -1", "toll many", "toll 2.5",
                                   "toll \u00b2", "toll " + "9" * 5000])
def test_toll_refuses_what_is_not_a_number_of_strokes_from_1_to_12(rt, hero, typed):
    hero.types(typed)
    assert hero.heard() == ["Toll how many times? Usage: toll [1-12]"]
    rt.advance(60)
    assert hero.heard() == []


# -- bigswing: a command that blocks itself -----------------------------------------------------

def test_bigswing_cannot_be_repeated_until_the_player_recovers(rt, hero):
    hero.types("bigswing troll")
    hero.types("swing troll")                # the alias is blocked too
    rt.advance(7.9)
    hero.types("bigswing troll")
    assert hero.heard() == [
        "You put all your weight into a swing at troll and stumble off balance.",
        "You are still staggering from your last swing!",
        "You are still staggering from your last swing!",
    ]
    rt.advance(0.1)
    assert hero.heard() == ["You find your footing again."]
    hero.types("bigswing")
    assert hero.heard() == ["You put all your weight into a swing at the air and stumble off balance."]


def test_off_balance_is_forgotten_by_a_reload(rt, hero):
    hero.types("bigswing troll")
    rt.reload()
    hero.refetch()
    hero.types("bigswing troll")
    rt.advance(8)
    assert hero.heard() == ["You put all your weight into a swing at troll and stumble off balance.",
                            "You put all your weight into a swing at troll and stumble off balance.",
                            "You find your footing again."]


# -- craft, attack and north: a command that can be interrupted ---------------------------------

def test_crafting_takes_three_steps_and_keeps_the_player_at_the_workbench(rt, hero):
    hero.types("craft fine sword")
    hero.types("north")
    assert hero.heard() == ["You start crafting fine sword.",
                            "You can't walk away from your workbench in the middle of crafting!"]
    rt.advance(10)
    assert hero.heard() == ["You shape the main part of fine sword."]
    hero.types("craft dagger")
    assert hero.heard() == ["Your hands are already busy with fine sword."]
    rt.advance(10)
    assert hero.heard() == ["You add the finer details to fine sword."]
    rt.advance(10)
    assert hero.heard() == ["You finish crafting fine sword."]
    hero.types("n")
    assert hero.heard() == ["You walk north ... and back again: this world is one room."]
    assert hero.obj.ndb.crafting is None and hero.obj.ndb.crafting_task is None


def test_craft_without_a_thing_explains_its_usage(hero):
    hero.types("craft")
    assert hero.heard() == ["Craft what? Usage: craft <thing>"]


def test_attacking_cancels_the_pending_craft_step_at_once(rt, hero):
    hero.types("craft chain mail")
    rt.advance(10)
    step = hero.obj.ndb.crafting_task
    assert step.active()
    rt.advance(5)
    hero.heard()
    hero.types("attack goblin")
    assert hero.heard() == ["You drop chain mail half-finished.", "You attack goblin!"]
    assert not step.active()                 # cancelled now, not when it would have fired
    assert hero.obj.ndb.crafting is None
    # Only the fight's end is still scheduled: the step due at 20 s left the clock at 15 s.
    assert [call.getTime() for call in rt.clock.getDelayedCalls()] == [15 + FIGHT_LENGTH]
    hero.types("west")                       # no longer stuck at the workbench
    assert hero.heard() == ["You walk west ... and back again: this world is one room."]
    rt.advance(15)                           # past the cancelled steps' times
    assert hero.heard() == []


def test_no_crafting_during_a_fight_and_the_fight_ends_after_twenty_seconds(rt, hero):
    hero.types("craft chain mail")
    rt.advance(10)
    hero.types("hit goblin")
    hero.heard()
    rt.advance(10)
    hero.types("craft chain mail")
    assert hero.heard() == ["Not now: you are in the middle of a fight!"]
    rt.advance(9.9)
    assert hero.heard() == []
    rt.advance(0.1)
    hero.types("craft chain mail")
    assert hero.heard() == ["The fight is over. You catch your breath.",
                            "You start crafting chain mail."]


def test_the_craft_refusal_in_a_fight_is_what_the_page_shows(rt, hero):
    hero.types("attack goblin")
    hero.types("craft chain mail")
    assert hero.heard() == ["You attack goblin!",
                            "Not now: you are in the middle of a fight!"]


def test_attacking_again_does_not_start_a_second_fight(rt, hero):
    hero.types("strike rat")
    rt.advance(10)
    hero.types("strike rat")
    rt.advance(10)
    assert hero.heard() == ["You attack rat!", "You attack rat!",
                            "The fight is over. You catch your breath."]
    rt.advance(20)
    assert hero.heard() == []


def test_attack_with_no_target_and_nothing_crafted(hero):
    hero.types("attack")
    assert hero.heard() == ["You attack the nearest shadow!"]


# -- brew: a persistent delay -------------------------------------------------------------------

def test_brewing_survives_a_reload(rt, hero):
    hero.types("brew healing draught")
    assert hero.heard() == [
        "You set a cauldron of healing draught to simmer. It will be ready in a minute."]
    rt.advance(30)
    rt.reload()
    hero.refetch()
    hero.types("brew more")
    assert hero.heard() == ["Your healing draught is still bubbling."]
    rt.advance(29.9)
    assert hero.heard() == []
    rt.advance(0.1)
    assert hero.heard() == ["Your healing draught is ready!"]
    assert hero.obj.db.brewing is None


def test_finish_brew_run_twice_tells_the_player_once(rt, hero):
    # The store runs a persistent callback again if the server died before it could forget the
    # task, so the callback must be safe to run twice.
    hero.types("brew mead")
    hero.heard()
    command_duration.finish_brew(hero.obj, "mead")
    command_duration.finish_brew(hero.obj, "mead")
    assert hero.heard() == ["Your mead is ready!"]
    assert hero.obj.db.brewing is None


def test_a_refused_brew_leaves_nothing_bubbling(rt, hero, monkeypatch):
    def refuse(*args, **kwargs):
        raise NotPersistableError("the store is read-only today")

    monkeypatch.setattr(command_duration, "delay", refuse)
    with caught_log():
        hero.types("brew mead")
    monkeypatch.undo()
    assert hero.obj.db.brewing is None
    rt.reload()
    hero.refetch()
    hero.heard()
    hero.types("brew mead")
    assert hero.heard() == [
        "You set a cauldron of mead to simmer. It will be ready in a minute."]


def test_brew_without_a_potion_explains_its_usage(hero):
    hero.types("brew")
    assert hero.heard() == ["Brew what? Usage: brew <potion>"]


def test_a_plain_order_does_not_survive_a_reload(rt, hero):
    hero.types("order fish pie")
    rt.reload()
    hero.refetch()
    rt.advance(10)
    hero.types("order fish pie")
    rt.advance(10)
    assert hero.heard() == [
        "You order fish pie. The cook disappears into the kitchen.",
        "You order fish pie. The cook disappears into the kitchen.",
        "The cook brings your fish pie, steaming hot.",
    ]


def test_a_paused_wait_is_closed_cleanly_by_a_reload(rt, hero):
    hero.types("wait")
    with caught_log() as log:
        rt.reload()
        hero.refetch()
        rt.advance(10)
    assert hero.heard() == ["You start counting to ten..."]
    assert log.failures() == []


# -- north: the one room ----------------------------------------------------------------------

@pytest.mark.parametrize("typed, direction", [("n", "north"), ("north", "north"),
                                              ("s", "south"), ("e", "east"), ("w", "west"),
                                              ("West", "west")])
def test_walking_names_the_full_direction(hero, typed, direction):
    hero.types(typed)
    assert hero.heard() == [f"You walk {direction} ... and back again: this world is one room."]


# -- the set as a whole -------------------------------------------------------------------------

def test_help_lists_every_command_of_the_howto(hero):
    hero.types("help")
    listed = [line.split()[0] for line in hero.heard()[1:-1]]
    assert listed == ["attack", "bigswing", "brew", "craft", "help", "north", "order", "toll",
                      "wait"]


def test_the_howto_imports_only_from_evasync():
    source = pathlib.Path(command_duration.__file__).read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["from evasync import CmdSet, Command, MuxCommand, delay"]
