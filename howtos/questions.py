"""Asking players questions with ``@interactive``: the code of the "Asking questions" howto.

Everything here runs on Evennia too, with only the imports changed, except ``CmdQuickSale``,
which uses evasync's ``ask()`` (marked "evasync only" on the page).
"""

from evasync import TASK_HANDLER, CmdSet, Command, ask, interactive

REST_ROUND = 10  # seconds per round of rest
SALE_TIMEOUT = 15  # seconds a shopkeeper waits for an answer


@interactive
def rest_by_the_fire(caller, max_rounds=5):
    """Rest in rounds, asking after each whether to go on; says how long the rest lasted."""
    rounds = 0
    try:
        while rounds < max_rounds:
            caller.msg("You rest by the fire ...")
            yield REST_ROUND
            rounds += 1
            caller.msg(f"You feel rested ({rounds} round{'s' if rounds > 1 else ''}).")
            again = yield "Rest a bit longer? (yes/no)"
            if again.strip().lower() not in ("yes", "y"):
                break
        caller.msg(f"You get up after {rounds} round{'s' if rounds > 1 else ''} of rest.")
    finally:
        # Runs however the rest ends: a "no", the last round, or the player leaving.
        caller.ndb.resting = False
    return rounds


class CmdRest(Command):
    """
    Rest by the fire for a while.

    Usage:
      rest
    """

    key = "rest"

    def func(self):
        caller = self.caller
        if caller.ndb.resting:
            self.msg("You are already resting.")
            return
        caller.ndb.resting = True
        rest_by_the_fire(caller)


class CmdSell(Command):
    """
    Sell something to the shopkeeper, after saying yes to the price.

    Usage:
      sell <item>

    The offer stands for fifteen seconds: a yes that comes later is
    too late.
    """

    key = "sell"

    def func(self):
        item = self.args.strip()
        if not item:
            self.msg("Sell what? Usage: sell <item>")
            return
        price = 3 * len(item)
        offered_at = TASK_HANDLER.clock.seconds()
        answer = yield self.offer(
            f"The shopkeeper offers {price} gold for {item}. Deal? (yes/no)")
        if TASK_HANDLER.clock.seconds() - offered_at > SALE_TIMEOUT:
            self.msg(f"The shopkeeper has lost interest. You keep {item}.")
        elif answer.strip().lower() in ("yes", "y"):
            self.msg(f"You sell {item} for {price} gold.")
        else:
            self.msg(f"You keep {item}.")

    def offer(self, question):
        """What func() yields: the question itself, which waits as long as it takes."""
        return question


class CmdQuickSale(CmdSell):
    """
    Sell something to a shopkeeper who will not wait long for you.

    Usage:
      quicksell <item>

    Fifteen seconds of silence count as a no.
    """

    key = "quicksell"

    def offer(self, question):
        # evasync only: ask() gives up after the timeout and answers the default.
        return ask(question, timeout=SALE_TIMEOUT, default="no")


class QuestionsCmdSet(CmdSet):
    """The questions howto's commands."""

    key = "questions"

    def at_cmdset_creation(self):
        self.add(CmdRest)
        self.add(CmdSell)
        self.add(CmdQuickSale)


if __name__ == "__main__":
    from howtos import questions
    from howtos._console import play

    raise SystemExit(play(questions.QuestionsCmdSet))
