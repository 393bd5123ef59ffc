"""One command written twice: with ``yield`` (runs on evasync and Evennia) and with ``async def``.

Both forge something in three stages: the iron heats for a while, the hammering is worked out,
and the smith is asked whether to quench the piece now. The ``async def`` version (evasync
only) awaits each stage: ``sleep`` for the pause, ``run_async`` for the work, ``ask`` for the
question with a time limit. Play them with ``python -m howtos.forge``.
"""

from evasync import CmdSet, MuxCommand, ask, run_async, sleep

HEAT_TIME = 10      # seconds the iron takes to glow
QUENCH_WAIT = 30    # seconds the smith waits for an answer before quenching anyway


def hammer_blows(thing):
    """Work out how many blows ``thing`` takes: here a quick sum, in a real game anything."""
    return 3 * len(thing) + sum(map(ord, thing)) % 7


class CmdForge(MuxCommand):
    """
    Forge something at the anvil.

    Usage:
      forge <thing>

    Heats the iron, hammers it and asks whether to quench it: a
    generator func() that pauses with yield and asks with yield.
    """

    key = "forge"

    def func(self):
        thing = self.args.strip() or "a horseshoe"
        self.msg(f"You put the iron for {thing} in the fire.")
        yield HEAT_TIME
        self.msg(f"The iron glows. You hammer {thing}: {hammer_blows(thing)} blows.")
        answer = yield f"Quench {thing} in the water now? (yes/no)"
        if answer.strip().lower() in ("yes", "y"):
            self.msg(f"Hiss! {thing.capitalize()} is hard and ready.")
        else:
            self.msg(f"You let {thing} cool slowly in the air.")


class CmdForgeAsync(MuxCommand):
    """
    Forge something at the anvil (the async def version).

    Usage:
      forge <thing>

    The same steps, awaited: sleep() for the heat, run_async() for
    the hammering, ask() for the question (which gives up after
    thirty seconds and quenches).
    """

    key = "forge"

    async def func(self):
        thing = self.args.strip() or "a horseshoe"
        self.msg(f"You put the iron for {thing} in the fire.")
        await sleep(HEAT_TIME)
        blows = await run_async(hammer_blows, thing, executor="reactor")
        self.msg(f"The iron glows. You hammer {thing}: {blows} blows.")
        answer = await ask(f"Quench {thing} in the water now? (yes/no)",
                           timeout=QUENCH_WAIT, default="yes")
        if answer.strip().lower() in ("yes", "y"):
            self.msg(f"Hiss! {thing.capitalize()} is hard and ready.")
        else:
            self.msg(f"You let {thing} cool slowly in the air.")


class ForgeCmdSet(CmdSet):
    """The forge command with yield: portable."""

    key = "forge"

    def at_cmdset_creation(self):
        self.add(CmdForge)


class AsyncForgeCmdSet(CmdSet):
    """The forge command with async def: evasync only."""

    key = "forge_async"

    def at_cmdset_creation(self):
        self.add(CmdForgeAsync)


if __name__ == "__main__":
    from howtos import forge
    from howtos._console import play

    raise SystemExit(play(forge.AsyncForgeCmdSet))
