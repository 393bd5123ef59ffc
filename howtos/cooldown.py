"""A cooldown that compares timestamps instead of scheduling anything.

Nothing runs while the cooldown passes: the command remembers when it was last used and checks
the clock the next time. That costs nothing between uses, which makes it the cheapest way to
limit how often something can be done, as long as the player does not need to be told the moment
the cooldown ends.
"""

import math

from evasync import TASK_HANDLER, CmdSet, MuxCommand

COOLDOWN = 30  # seconds between two power attacks


class CmdPowerAttack(MuxCommand):
    """
    A devastating attack you can only use every thirty seconds.

    Usage:
      powerattack <target>
    """

    key = "powerattack"
    aliases = ["pa"]

    def func(self):
        caller = self.caller
        now = TASK_HANDLER.clock.seconds()  # the clock delays run on, in evasync and Evennia
        last = caller.db.last_power_attack
        if last is not None:
            left = math.ceil(COOLDOWN - (now - last))  # 0.4 s left is "1 more second"
            if left > 0:
                unit = "second" if left == 1 else "seconds"
                self.msg(f"You are still gathering strength: {left} more {unit}.")
                return
        target = self.args or "the training dummy"
        self.msg(f"You unleash a power attack on {target}!")
        # Stored in db, so a reload does not reset the cooldown.
        caller.db.last_power_attack = now


class CooldownCmdSet(CmdSet):
    """The cooldown howto's command."""

    key = "cooldown"

    def at_cmdset_creation(self):
        self.add(CmdPowerAttack)


if __name__ == "__main__":
    from howtos import cooldown
    from howtos._console import play

    raise SystemExit(play(cooldown.CooldownCmdSet))
