"""Commands that take time: the code of the "Commands that take time" howto.

Play it in a terminal with ``python -m howtos.command_duration``. Every command here is also run
by the howto page's transcripts, in virtual time.
"""

from evasync import CmdSet, Command, MuxCommand, delay

COOKING_TIME = 10  # seconds until an ordered dish arrives
TOLL_GAP = 3       # seconds between two strokes of the bell
MAX_STROKES = 12   # the most strokes one toll rings
CRAFT_STEP = 10    # seconds per crafting step
FIGHT_LENGTH = 20  # seconds a fight keeps you busy
BREW_TIME = 60     # seconds a potion takes; survives a reload


class CmdWait(Command):
    """
    Stand still and count to ten.

    Usage:
      wait

    Pauses with `yield`: the rest of func() runs ten seconds later,
    and you (and everyone else) can keep playing meanwhile.
    """

    key = "wait"

    def func(self):
        self.msg("You start counting to ten...")
        yield 10
        self.msg("... ten. You stop counting.")


class CmdOrder(MuxCommand):
    """
    Order a dish from the tavern kitchen.

    Usage:
      order <dish>

    Schedules a callback with delay(): func() ends at once, and the
    dish arrives ten seconds later.
    """

    key = "order"

    def func(self):
        if not self.args:
            self.msg("Order what? Usage: order <dish>")
            return
        self.msg(f"You order {self.args}. The cook disappears into the kitchen.")
        delay(COOKING_TIME, self.serve)

    def serve(self):
        self.msg(f"The cook brings your {self.args}, steaming hot.")


class CmdToll(MuxCommand):
    """
    Toll the chapel bell, one stroke every three seconds.

    Usage:
      toll [<strokes>]

    Rings three strokes unless you say how many (at most twelve).
    Each stroke schedules the next one: a chain of delays.
    """

    key = "toll"

    def func(self):
        try:
            strokes = int(self.args or 3)
        except ValueError:
            strokes = 0
        if not 1 <= strokes <= MAX_STROKES:
            self.msg(f"Toll how many times? Usage: toll [1-{MAX_STROKES}]")
            return
        self.msg("You grip the bell rope and pull.")
        delay(TOLL_GAP, self.strike, 1, strokes)

    def strike(self, stroke, strokes):
        self.msg(f"BONG ({stroke} of {strokes})")
        if stroke < strokes:
            # The callback, like the arguments handed to it, may be passed by keyword.
            delay(TOLL_GAP, callback=self.strike, stroke=stroke + 1, strokes=strokes)
        else:
            self.msg("The last stroke hums away over the rooftops.")


class CmdBigSwing(MuxCommand):
    """
    Swing your weapon with all your might.

    Usage:
      bigswing <target>

    Putting everything into one blow leaves you off balance for eight
    seconds; you cannot swing again until you recover.
    """

    key = "bigswing"
    aliases = ["swing"]
    locks = "cmd:all()"

    def func(self):
        caller = self.caller
        if caller.ndb.off_balance:
            self.msg("You are still staggering from your last swing!")
            return
        target = self.args or "the air"
        self.msg(f"You put all your weight into a swing at {target} and stumble off balance.")
        # Kept on the character: every line typed runs a new copy of the command, so a flag
        # set on this instance would be gone by the next swing, and no other command could
        # read it. The callback below is handed the character for the same reason.
        caller.ndb.off_balance = True
        delay(8, recover_balance, caller)


def recover_balance(character):
    """Callback of bigswing: clear the flag and tell the player."""
    del character.ndb.off_balance
    character.msg("You find your footing again.")


class CmdCraft(MuxCommand):
    """
    Craft something, step by step.

    Usage:
      craft <thing>

    Takes three steps of ten seconds. While you craft you cannot walk
    away, and attacking someone stops the work at once.
    """

    key = "craft"
    locks = "cmd:all()"

    def func(self):
        caller = self.caller
        if not self.args:
            self.msg("Craft what? Usage: craft <thing>")
            return
        if is_crafting(caller):
            self.msg(f"Your hands are already busy with {caller.ndb.crafting}.")
            return
        if caller.ndb.fighting:
            self.msg("Not now: you are in the middle of a fight!")
            return
        caller.ndb.crafting = self.args
        self.msg(f"You start crafting {self.args}.")
        # Keep the handle of the next step on the character: the attack command cancels it.
        caller.ndb.crafting_task = delay(CRAFT_STEP, craft_step, caller, 1)


CRAFT_STEPS = {
    1: "You shape the main part of {thing}.",
    2: "You add the finer details to {thing}.",
    3: "You finish crafting {thing}.",
}


def is_crafting(character):
    task = character.ndb.crafting_task
    return task is not None and task.active()


def craft_step(character, number):
    """Callback of craft: one step done; schedule the next or finish."""
    character.msg(CRAFT_STEPS[number].format(thing=character.ndb.crafting))
    if number < len(CRAFT_STEPS):
        character.ndb.crafting_task = delay(CRAFT_STEP, craft_step, character, number + 1)
    else:
        del character.ndb.crafting_task
        del character.ndb.crafting


class CmdAttack(MuxCommand):
    """
    Attack someone (or something).

    Usage:
      attack <target>

    Starting a fight stops any crafting you are doing, right away.
    """

    key = "attack"
    aliases = ["hit", "strike"]
    locks = "cmd:all()"

    def func(self):
        caller = self.caller
        target = self.args or "the nearest shadow"
        if is_crafting(caller):
            caller.ndb.crafting_task.cancel()
            self.msg(f"You drop {caller.ndb.crafting} half-finished.")
            del caller.ndb.crafting_task
            del caller.ndb.crafting
        self.msg(f"You attack {target}!")
        if not caller.ndb.fighting:
            caller.ndb.fighting = True
            delay(FIGHT_LENGTH, end_fight, caller)


def end_fight(character):
    """Callback of attack: the fight is over."""
    del character.ndb.fighting
    character.msg("The fight is over. You catch your breath.")


class CmdMove(Command):
    """
    Walk in a direction.

    Usage:
      north | south | east | west

    You can't walk away from your workbench while crafting.
    """

    key = "north"
    aliases = ["south", "east", "west", "n", "s", "e", "w"]

    def func(self):
        if is_crafting(self.caller):
            self.msg("You can't walk away from your workbench in the middle of crafting!")
            return
        direction = DIRECTIONS.get(self.cmdstring.lower(), self.cmdstring.lower())
        self.msg(f"You walk {direction} ... and back again: this world is one room.")


DIRECTIONS = {"n": "north", "s": "south", "e": "east", "w": "west"}


class CmdBrew(MuxCommand):
    """
    Brew a potion. It takes a minute, even if the server reloads.

    Usage:
      brew <potion>

    Uses a persistent delay: the task is stored, so a reload in the
    middle does not lose it.
    """

    key = "brew"

    def func(self):
        caller = self.caller
        if not self.args:
            self.msg("Brew what? Usage: brew <potion>")
            return
        if caller.db.brewing:
            self.msg(f"Your {caller.db.brewing} is still bubbling.")
            return
        # A persistent task must be found again after a reload: a module-level function and a
        # stored character qualify, a method of this Command instance would not. The flag is set
        # only once delay() has accepted the task, so a refusal leaves nothing "bubbling".
        delay(BREW_TIME, finish_brew, caller, self.args, persistent=True)
        caller.db.brewing = self.args
        self.msg(f"You set a cauldron of {self.args} to simmer. It will be ready in a minute.")


def finish_brew(character, potion):
    """Callback of brew (persistent): the potion is ready.

    Safe to run twice, as a persistent callback must be: after a crash the task runs again.
    """
    if character.db.brewing != potion:
        return  # already finished
    del character.db.brewing
    character.msg(f"Your {potion} is ready!")


class CommandDurationCmdSet(CmdSet):
    """Every command of the howto."""

    key = "command_duration"

    def at_cmdset_creation(self):
        for command in (CmdWait, CmdOrder, CmdToll, CmdBigSwing, CmdCraft, CmdAttack, CmdMove,
                        CmdBrew):
            self.add(command)


if __name__ == "__main__":
    # Import ourselves by name: functions defined in __main__ cannot be stored by persistent
    # delays, the module's own ones can.
    from howtos import command_duration
    from howtos._console import play

    raise SystemExit(play(command_duration.CommandDurationCmdSet))
