"""Asking players questions with ``@interactive``: the code of the "Asking questions" howto."""

from evasync import CmdSet, Command, ask, interactive

REST_ROUND = 10  # seconds per round of rest
SALE_TIMEOUT = 15  # seconds a shopkeeper waits for an answer


@interactive
def rest_by_the_fire(caller, max_rounds=5):
    """Rest in rounds, asking after each whether to go on. Returns the rounds rested."""
    rounds = 0
    try:
        while rounds < max_rounds:
            caller.msg("You rest by the fire ...")
            yield REST_ROUND
            rounds += 1
            caller.msg(f"You feel rested ({rounds} round{'s' if rounds > 1 else ''}).")
            again = yield "Rest a bit longer? (yes/no)"
            if again.lower() not in ("yes", "y"):
                break
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
        done = rest_by_the_fire(caller)
        done.addCallback(lambda rounds: caller.msg(
            f"You get up after {rounds} round(s) of rest."))


class CmdSell(Command):
    """
    Sell something to the shopkeeper, after saying yes to the price.

    Usage:
      sell <item>

    The shopkeeper will not wait forever: no answer within fifteen
    seconds means no sale.
    """

    key = "sell"

    def func(self):
        item = self.args.strip()
        if not item:
            self.msg("Sell what? Usage: sell <item>")
            return
        price = 3 * len(item)
        # A question in Command.func works like one in an @interactive function; ask() adds a
        # timeout and the answer to use when it runs out.
        answer = yield ask(f"The shopkeeper offers {price} gold for {item}. Deal? (yes/no)",
                           timeout=SALE_TIMEOUT, default="no")
        if answer.lower() in ("yes", "y"):
            self.msg(f"You sell {item} for {price} gold.")
        else:
            self.msg(f"You keep {item}.")


class QuestionsCmdSet(CmdSet):
    """The questions howto's commands."""

    key = "questions"

    def at_cmdset_creation(self):
        self.add(CmdRest)
        self.add(CmdSell)


if __name__ == "__main__":
    from howtos import questions
    from howtos._console import play

    raise SystemExit(play(questions.QuestionsCmdSet))
