"""mygame's commands: fishing takes a moment; a seed flowers later, even after a reload."""

from evasync import CmdSet, Command, MuxCommand, delay

FISHING_TIME = 5    # seconds until a fish bites
GROWING_TIME = 120  # seconds from seed to flower


class CmdFish(Command):
    """
    Cast a line and wait for a bite.

    Usage:
      fish
    """

    key = "fish"

    def func(self):
        self.msg("You cast your line into the pond.")
        yield FISHING_TIME  # everyone else keeps playing meanwhile
        self.msg("Something tugs at the line: you land a perch.")


def bloom(character, seed):
    """The end of a planting. Stored with the task, so it runs after a reload too."""
    garden = dict(character.db.garden or {})
    if garden.get(seed) == "in bloom":
        return  # already done: a stored task may run a second time after a crash
    garden[seed] = "in bloom"
    character.db.garden = garden
    character.msg(f"Your {seed} is in bloom.")


class CmdPlant(MuxCommand):
    """
    Plant a seed; it flowers two minutes later, reload or not.

    Usage:
      plant <seed>
    """

    key = "plant"

    def func(self):
        seed = self.args.lower()
        if not seed:
            self.msg("Plant what? Usage: plant <seed>")
            return
        garden = dict(self.caller.db.garden or {})
        if seed in garden:
            self.msg(f"There is {seed} in your garden already.")
            return
        delay(GROWING_TIME, bloom, self.caller, seed, persistent=True)
        # Only once the delay is accepted: a refused one must leave no seed behind.
        garden[seed] = "growing"
        self.caller.db.garden = garden
        self.msg(f"You plant the {seed} seed.")


class CmdGarden(Command):
    """
    See what grows in your garden.

    Usage:
      garden
    """

    key = "garden"

    def func(self):
        garden = self.caller.db.garden or {}
        if not garden:
            self.msg("Your garden is bare. Usage: plant <seed>")
            return
        for seed, state in sorted(garden.items()):
            self.msg(f"{seed}: {state}")


class GameCmdSet(CmdSet):
    """Everything a mygame character can do in the game itself."""

    key = "mygame"

    def at_cmdset_creation(self):
        self.add(CmdFish)
        self.add(CmdPlant)
        self.add(CmdGarden)
