"""Heavy work off the reactor with ``run_async``: the code of the "Offloading heavy work" howto.

``CmdStargaze`` runs on Evennia too, with only the imports changed; ``CmdChart`` uses evasync's
``executor="process"`` (marked "evasync only" on the page).
"""

from evasync import CmdSet, MuxCommand, run_async

DEFAULT_STARS = 2000


def count_constellations(seed, stars=DEFAULT_STARS):
    """Count the pairs of stars close enough to form a constellation line.

    Pure Python and CPU-heavy. A module-level function of plain arguments,
    so it can be sent to a worker process.
    """
    if stars < 2:
        raise ValueError(f"a constellation needs at least 2 stars, not {stars}")
    state = seed or 1
    points = []
    for _ in range(stars):
        # A small linear congruential generator: the same seed always gives the same sky.
        state = (state * 1103515245 + 12345) % 2**31
        x = state % 10_000
        state = (state * 1103515245 + 12345) % 2**31
        points.append((x, state % 10_000))
    close = 0
    for i, (x1, y1) in enumerate(points):
        for x2, y2 in points[i + 1:]:
            if (x1 - x2) ** 2 + (y1 - y2) ** 2 < 40_000:
                close += 1
    return close


class CmdStargaze(MuxCommand):
    """
    Study the night sky and count its constellations.

    Usage:
      stargaze [<seed>] [= <number of stars>]

    The counting takes a while; it runs in a thread, so nobody waits
    for it, and you hear the answer when it is done.
    """

    key = "stargaze"

    def func(self):
        try:
            seed = int(self.lhs or 7)
            stars = int(self.rhs or DEFAULT_STARS)
        except ValueError:
            self.msg(f"Usage: {self.key} [<seed>] [= <number of stars>], with whole numbers.")
            return
        self.msg("You lie back and start counting the stars ...")
        return self.count(seed, stars)

    def count(self, seed, stars):
        """Count in a thread: evasync's default, and what Evennia's run_async always does."""
        return run_async(count_constellations, seed, stars=stars,
                         at_return=self.report, at_err=self.failed)

    def report(self, pairs):
        self.msg(f"You make out {pairs} constellation lines in the sky.")

    def failed(self, failure):
        self.msg(f"You lose count: {failure.getErrorMessage()}")


class CmdChart(CmdStargaze):
    """
    Stargaze, with the counting done in a worker process.

    Usage:
      chart [<seed>] [= <number of stars>]

    The same as stargaze, but the counting runs in another process,
    which keeps the game more responsive for everyone meanwhile.
    """

    key = "chart"

    def count(self, seed, stars):
        # evasync only: Evennia's run_async would pass executor= on to count_constellations.
        return run_async(count_constellations, seed, stars=stars, executor="process",
                         at_return=self.report, at_err=self.failed)


class OffloadCmdSet(CmdSet):
    """The offloading howto's command."""

    key = "offload"

    def at_cmdset_creation(self):
        self.add(CmdStargaze)
        self.add(CmdChart)


if __name__ == "__main__":
    from howtos import offload
    from howtos._console import play

    raise SystemExit(play(offload.OffloadCmdSet))
