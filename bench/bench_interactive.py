"""10,000 paused generators driven by evasync's driver, beside a bare ``generator.send`` floor.

Measures, in one run:

* memory per paused generator (tracemalloc): everything the driver keeps for one waiting
  generator (the generator and its frame, the driver's record, its Deferred, the clock call);
* microseconds per resume: a pause comes due, the driver sends into the generator, the generator
  pauses again.

The floor is the same generator function, paused and resumed with a bare ``gen.send(None)`` in a
loop. A middle row, the clock alone (a plain function that reschedules itself), shows how much
of the driver's time is the clock's.

Resumes are timed on a minimal heap clock of this module's own. ``twisted.internet.task.Clock``
is no floor: it re-sorts its whole list of calls on every ``callLater``. The driver takes its
clock from the runtime, so the runtime is simply built with this one.

Run: ``.venv/bin/python -m bench interactive`` (or ``make bench``).
"""

from __future__ import annotations

import gc
import heapq
import itertools
import pathlib
import platform
import statistics
import tempfile
import time
import tracemalloc
from typing import Any, Callable

import twisted

from evasync.runtime import Runtime

N = 10_000          # generators paused at once
ROUNDS = 10         # each timing: every generator resumed this many times
REPEATS = 9         # timings per row; the median is reported
PAUSE = 1.0         # seconds each generator pauses between resumes


class _Call:
    """What :meth:`HeapClock.callLater` returns: enough of IDelayedCall for the driver."""

    __slots__ = ("time", "func", "args", "cancelled", "called")

    def __init__(self, when: float, func: Callable[..., Any], args: tuple) -> None:
        self.time = when
        self.func = func
        self.args = args
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        return self.time

    def cancel(self) -> None:
        self.cancelled = True

    def active(self) -> bool:
        return not (self.cancelled or self.called)


class HeapClock:
    """A minimal virtual clock: a heap of calls, O(log n) to schedule and to fire."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, _Call]] = []
        self._order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, func: Callable[..., Any], *args: Any) -> _Call:
        call = _Call(self.now + delay, func, args)
        heapq.heappush(self._heap, (call.time, next(self._order), call))
        return call

    def getDelayedCalls(self) -> list[_Call]:
        return [call for _, _, call in self._heap if call.active()]

    def advance(self, seconds: float) -> None:
        """Fire, in time order, every call due within ``seconds`` (including ones they add)."""
        target = self.now + seconds
        heap = self._heap
        while heap and heap[0][0] <= target:
            when, _, call = heapq.heappop(heap)
            if call.cancelled:
                continue
            self.now = when
            call.called = True
            call.func(*call.args)
        self.now = target


def pausing():
    """The generator every row runs: pause, forever."""
    while True:
        yield PAUSE


class Caller:
    """A stand-in player: the driver only needs an object (and ``msg`` for questions)."""

    __slots__ = ()

    def msg(self, text: str) -> None:
        pass


# -- memory ---------------------------------------------------------------------------------------

def _traced(build: Callable[[], Any]) -> tuple[float, Any]:
    """Bytes per generator that ``build()`` leaves allocated, and what it built (kept alive)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / N, kept


def memory_floor() -> float:
    def build():
        gens = [pausing() for _ in range(N)]
        for gen in gens:
            gen.send(None)
        return gens

    per, _ = _traced(build)
    return per


def memory_driver(runtime: Runtime, callers: list[Caller]) -> float:
    def build():
        for caller in callers:
            runtime.driver.run(pausing(), caller)
        return None

    per, _ = _traced(build)
    assert len(runtime.driver) == N
    return per


# -- resume time ----------------------------------------------------------------------------------

def floor_round() -> Callable[[], None]:
    """``ROUNDS`` resumes of every bare paused generator."""
    gens = [pausing() for _ in range(N)]
    for gen in gens:
        gen.send(None)

    def one_timing():
        for _ in range(ROUNDS):
            for gen in gens:
                gen.send(None)

    return one_timing


def clock_round() -> Callable[[], None]:
    """``ROUNDS`` firings of ``N`` plain calls that reschedule themselves on the heap clock."""
    clock = HeapClock()

    def again():
        clock.callLater(PAUSE, again)

    for _ in range(N):
        clock.callLater(PAUSE, again)
    return lambda: clock.advance(PAUSE * ROUNDS)


def driver_round(runtime: Runtime) -> Callable[[], None]:
    """``ROUNDS`` resumes, by the driver, of every generator it holds."""
    assert len(runtime.driver) == N
    return lambda: runtime.clock.advance(PAUSE * ROUNDS)


def time_rows(timings: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Median µs per resume of each row. The rows take turns, after one warm-up turn each, so
    that no row gets the process's slow first seconds or a quieter moment than the others."""
    for one_timing in timings.values():
        one_timing()
    samples: dict[str, list[float]] = {name: [] for name in timings}
    for _ in range(REPEATS):
        for name, one_timing in timings.items():
            started = time.perf_counter()
            one_timing()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) / (N * ROUNDS) * 1e6
            for name, times in samples.items()}


# -- report ---------------------------------------------------------------------------------------

def measure() -> dict[str, tuple[float | None, float]]:
    """``{row: (bytes per paused generator or None, µs per resume)}``."""
    floor_bytes = memory_floor()
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as tmp:
        runtime = Runtime(clock=HeapClock(), db_path=pathlib.Path(tmp) / "bench.db")
        try:
            callers = [Caller() for _ in range(N)]   # made before measuring: not counted
            driver_bytes = memory_driver(runtime, callers)
            us = time_rows({"floor": floor_round(), "clock": clock_round(),
                            "driver": driver_round(runtime)})
            assert len(runtime.driver) == N
        finally:
            runtime.close()
    return {"floor": (floor_bytes, us["floor"]), "clock": (None, us["clock"]),
            "driver": (driver_bytes, us["driver"])}


def render(rows: dict[str, tuple[float | None, float]]) -> str:
    floor_bytes, floor_us = rows["floor"]
    clock_us = rows["clock"][1]
    driver_bytes, driver_us = rows["driver"]
    assert floor_bytes is not None and driver_bytes is not None

    def fmt_bytes(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    lines = [
        "# `@interactive` / `yield` in commands: 10,000 paused generators",
        "",
        f"{N:,} generators paused at once, each resumed {ROUNDS} times per timing; median of "
        f"{REPEATS} timings per row, the rows taking turns after a warm-up turn each.",
        "",
        "| what | bytes per paused generator | µs per resume | × floor |",
        "| --- | ---: | ---: | ---: |",
        f"| bare `generator.send` (floor) | {fmt_bytes(floor_bytes)} | {floor_us:.3f} | 1.0 |",
        f"| minimal heap clock alone (a function rescheduling itself) | — | {clock_us:.3f} | "
        f"{clock_us / floor_us:.1f} |",
        f"| evasync driver (`yield {PAUSE:g}` in a driven generator) | "
        f"{fmt_bytes(driver_bytes)} | {driver_us:.3f} | {driver_us / floor_us:.1f} |",
        "",
        f"Memory: the driver keeps {driver_bytes / floor_bytes:.1f}× what a bare paused "
        f"generator needs ({driver_bytes - floor_bytes:,.0f} bytes more each: its record of the "
        "run, the Deferred of its outcome, the pending clock call and the caller's entry). "
        f"Time: a resume costs {driver_us / floor_us:.1f}× a bare `send`, of which the clock "
        f"(schedule + fire) is {clock_us:.3f} µs; the driver's own share is about "
        f"{max(driver_us - clock_us, 0.0):.3f} µs.",
        "",
        "## How it was produced",
        "",
        "`.venv/bin/python -m bench interactive` (also run by `make bench`), code in "
        "`bench/bench_interactive.py`.",
        "",
        "- Floor: the same generator function (`while True: yield 1.0`), "
        f"{N:,} of them started and held in a list, resumed with `gen.send(None)` in a loop.",
        "- Driver: the same generators started with `runtime.driver.run(gen, caller)` (one "
        "caller object per generator, as for 10,000 players each in a paused command), on a "
        "`Runtime` built with a minimal heap clock of the benchmark's own; a timing advances "
        f"that clock {ROUNDS} × {PAUSE:g} s, so every generator is resumed {ROUNDS} times by the "
        "driver (send, read the yielded pause, schedule the next one).",
        "- Not twisted's `task.Clock`: it re-sorts all pending calls on every `callLater`, "
        "which would measure the sort, not the driver. The real reactor would add wall-clock "
        "waiting; the heap clock is what a reactor's timed-call queue does, minus the I/O.",
        "- Memory: `tracemalloc` traced bytes after minus before building the paused "
        "generators (garbage collected at both ends), divided by their number. The callers "
        "are made before measuring and not counted.",
        "- Garbage collection stays enabled during the timings, for every row alike.",
        "",
        f"Measured with Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Twisted {twisted.__version__}, on {platform.machine()} {platform.system()}.",
        "",
    ]
    return "\n".join(lines)


def main(results: pathlib.Path) -> None:
    rows = measure()
    text = render(rows)
    (results / "interactive.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main(pathlib.Path(__file__).resolve().parent / "results")
