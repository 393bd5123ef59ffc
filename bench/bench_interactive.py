"""Paused generators on the real reactor: memory per paused generator and the cost of a resume.

Run with ``make bench`` or ``.venv/bin/python -m bench interactive``; writes
``bench/results/interactive.md``.

Everything runs in a child process on the reactor users get (``twisted.internet.reactor``, the
real one): a process can run it only once. Measured there, in one run:

* memory: ``tracemalloc`` bytes per paused generator, for N generators driven by evasync's driver
  (``yield 60``), against a bare paused generator and a bare paused generator plus a kept
  ``reactor.callLater`` (the least a pause on the reactor can cost);
* time: N generators each resumed ``ROUNDS`` times by the driver (``yield 0``: every resume goes
  through the reactor), against the floor of a bare ``reactor.callLater(0)`` that reschedules
  itself, and a bare generator resumed by one;
* the same for ``async def`` bodies (``await sleep(60)`` paused, ``await sleep(0)`` resumed),
  beside the generators.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any, Callable

from bench._machine import describe as describe_machine, load, load_note
from evasync.driver import sleep

ROOT = pathlib.Path(__file__).resolve().parent.parent

N = 10_000          # generators paused at once
ROUNDS = 10         # each timing: every generator resumed this many times
REPEATS = 7         # timings per row; the median is reported
MEMORY_REPEATS = 3  # memory measurements per row; the median is reported
TARGET_BYTES = 600


class Caller:
    """A stand-in player: the driver only needs an object (and ``msg`` for questions)."""

    __slots__ = ()

    def msg(self, text: str) -> None:
        pass


def paused_forever():
    while True:
        yield 60


def resumed(rounds: int):
    for _ in range(rounds):
        yield 0


async def paused_forever_async():
    while True:
        await sleep(60)


async def resumed_async(rounds: int):
    for _ in range(rounds):
        await sleep(0)


def _bare_coroutine():
    """A bare coroutine paused at an ``await`` (started, held): the floor of the async rows."""
    coro = paused_forever_async()
    coro.send(None)
    return coro


# -- memory ---------------------------------------------------------------------------------------

def _bytes_per(build: Callable[[], Any], teardown: Callable[[Any], None]) -> float:
    """Bytes per generator that ``build()`` leaves allocated (garbage collected at both ends)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    teardown(kept)
    return (after - before) / N


def measure_memory(runtime: Any, reactor: Any) -> dict[str, float]:
    callers = [Caller() for _ in range(N)]  # made before measuring: players exist anyway

    def bare():
        gens = [paused_forever() for _ in range(N)]
        for gen in gens:
            gen.send(None)
        return gens

    def bare_with_call():
        gens = bare()
        return gens, [reactor.callLater(60, gen.send, None) for gen in gens]

    def driven():
        for caller in callers:
            runtime.driver.run(paused_forever(), caller)
        assert len(runtime.driver) == N

    def bare_async():
        return [_bare_coroutine() for _ in range(N)]

    def driven_async():
        for caller in callers:
            runtime.driver.run(paused_forever_async(), caller)
        assert len(runtime.driver) == N

    def close_all(kept):
        for coro in kept:
            coro.close()

    rows = {"bare": (bare, lambda kept: None),
            "bare+callLater": (bare_with_call, lambda kept: [c.cancel() for c in kept[1]]),
            "driver": (driven, lambda kept: runtime.driver.stop()),
            "bare coroutine": (bare_async, close_all),
            "driver, coroutine": (driven_async, lambda kept: runtime.driver.stop())}
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(MEMORY_REPEATS):
        for name, (build, teardown) in rows.items():
            samples[name].append(_bytes_per(build, teardown))
    return {name: statistics.median(values) for name, values in samples.items()}


# -- resume time ----------------------------------------------------------------------------------

def _timing_rows(runtime: Any, reactor: Any) -> dict[str, Callable[[Callable[[], None]], None]]:
    """Each row starts N chains of ROUNDS reactor turns and calls ``done()`` after the last."""

    def bare_call_later(done):
        left = [N]

        def again(rounds):
            if rounds:
                reactor.callLater(0, again, rounds - 1)
            else:
                left[0] -= 1
                if not left[0]:
                    done()

        for _ in range(N):
            reactor.callLater(0, again, ROUNDS - 1)

    def bare_generator(done):
        left = [N]

        def step(gen):
            try:
                gen.send(None)
            except StopIteration:
                left[0] -= 1
                if not left[0]:
                    done()
            else:
                reactor.callLater(0, step, gen)

        for _ in range(N):
            gen = resumed(ROUNDS)
            gen.send(None)
            reactor.callLater(0, step, gen)

    callers = [Caller() for _ in range(N)]

    def driven(body: Callable[[int], Any]) -> Callable[[Callable[[], None]], None]:
        def start(done):
            left = [N]

            def finished(_):
                left[0] -= 1
                if not left[0]:
                    done()

            for caller in callers:
                runtime.driver.run(body(ROUNDS), caller).addCallback(finished)
        return start

    return {"callLater": bare_call_later, "generator": bare_generator,
            "driver": driven(resumed), "driver, coroutine": driven(resumed_async)}


def measure_time(runtime: Any, reactor: Any) -> dict[str, dict[str, float]]:
    """Median µs per resume of each row (CPU and wall), rows taking turns after a warm-up."""
    from twisted.internet import defer

    rows = _timing_rows(runtime, reactor)
    samples = {name: {"cpu": [], "wall": []} for name in rows}

    def one(start: Callable) -> defer.Deferred:
        finished = defer.Deferred()
        gc.collect()
        clocks = (time.process_time(), time.perf_counter())

        def done():
            finished.callback((time.process_time() - clocks[0], time.perf_counter() - clocks[1]))

        start(done)
        return finished

    @defer.inlineCallbacks
    def turns():
        for start in rows.values():  # warm-up
            yield one(start)
        for _ in range(REPEATS):
            for name, start in rows.items():
                cpu, wall = yield one(start)
                samples[name]["cpu"].append(cpu / (N * ROUNDS) * 1e6)
                samples[name]["wall"].append(wall / (N * ROUNDS) * 1e6)

    result: dict = {}

    def run():
        d = turns()
        d.addErrback(lambda f: result.setdefault("error", f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in result:
        raise RuntimeError(result["error"])
    return {name: {kind: statistics.median(v) for kind, v in s.items()}
            for name, s in samples.items()}


def worker() -> None:
    """Child process: measure on the real reactor, print one JSON line."""
    from twisted.internet import reactor

    from evasync.runtime import Runtime

    folder = tempfile.mkdtemp(prefix="evasync-bench-")
    runtime = Runtime(db_path=os.path.join(folder, "bench.db"))  # the real reactor
    memory = measure_memory(runtime, reactor)
    times = measure_time(runtime, reactor)
    runtime.close()
    print(json.dumps({"memory": memory, "time": times, "reactor": type(reactor).__name__}),
          flush=True)


# -- report ---------------------------------------------------------------------------------------

def _driver_share(times: dict[str, dict[str, float]]) -> str:
    share = times["driver"]["cpu"] - times["generator"]["cpu"]
    if share >= 0:
        return (f"The driver's own share of a resume is about {share:.2f} µs (its row minus the "
                "bare generator's): reading what was yielded, scheduling the next call, its "
                "bookkeeping.")
    return (f"A driven resume costs {-share:.2f} µs less than a bare generator resumed by its "
            "own `callLater(0)`: the driver's pauses share one reactor call (a heap of its own, "
            "`evasync/_timers.py`) where the bare rows make a `DelayedCall` per resume, so the "
            "reactor's cost per resume is what the driver saves.")


def main(results: pathlib.Path) -> None:
    load_before = load()
    done = subprocess.run([sys.executable, "-c",
                           "from bench.bench_interactive import worker; worker()"],
                          cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE)
    measured = json.loads(done.stdout.splitlines()[-1])
    text = render(measured, load_before, load())
    (results / "interactive.md").write_text(text, encoding="utf-8")
    print(text)


def render(measured: dict, load_before: str, load_after: str) -> str:
    memory, times = measured["memory"], measured["time"]
    floor = times["callLater"]
    lines = [
        f"# `@interactive` / `yield` in commands: {N:,} paused generators on the real reactor",
        "",
        "Produced by `.venv/bin/python -m bench interactive` (`bench/bench_interactive.py`, also "
        f"part of `make bench`) on {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        load_note(load_before, load_after),
        "",
        f"Everything below ran in one process on the reactor users get "
        f"(`{measured['reactor']}`, real time), with the garbage collector on.",
        "",
        "## Memory per paused generator",
        "",
        f"`tracemalloc` bytes after minus before pausing {N:,} generators (garbage collected at "
        f"both ends), divided by {N:,}; median of {MEMORY_REPEATS} measurements. The callers "
        "(one per generator, as for players each in a paused command) are made beforehand and "
        "not counted.",
        "",
        "| what | bytes per paused generator | × bare generator |",
        "| --- | ---: | ---: |",
        f"| bare paused generator (`while True: yield 60`, started, held in a list) "
        f"| {memory['bare']:,.0f} | 1.0 |",
        f"| bare paused generator + a kept `reactor.callLater(60, gen.send, None)` "
        f"| {memory['bare+callLater']:,.0f} | {memory['bare+callLater'] / memory['bare']:.1f} |",
        f"| evasync driver: `driver.run(gen, caller)`, the generator paused at `yield 60` "
        f"| {memory['driver']:,.0f} | {memory['driver'] / memory['bare']:.1f} |",
        f"| bare paused coroutine (`while True: await sleep(60)`, started, held in a list) "
        f"| {memory['bare coroutine']:,.0f} | {memory['bare coroutine'] / memory['bare']:.1f} |",
        f"| evasync driver: `driver.run(coro, caller)`, the coroutine paused at "
        f"`await sleep(60)` | {memory['driver, coroutine']:,.0f} "
        f"| {memory['driver, coroutine'] / memory['bare']:.1f} |",
        "",
        "A coroutine object is larger than a generator's; what the driver adds to either is the "
        f"same ({memory['driver'] - memory['bare']:,.0f} B for a generator, "
        f"{memory['driver, coroutine'] - memory['bare coroutine']:,.0f} B for a coroutine).",
        "",
        f"Target, at most {TARGET_BYTES} bytes per paused generator on the reactor: "
        f"**{'met' if memory['driver'] <= TARGET_BYTES else 'NOT met'}** "
        f"({memory['driver']:,.0f} B; the least a pause on the reactor costs, a bare generator "
        f"and its pending call, is {memory['bare+callLater']:,.0f} B).",
        "",
        "## Cost of a resume",
        "",
        f"{N:,} chains, each resumed {ROUNDS} times through the reactor (`callLater(0)`: one "
        "reactor turn per resume, the reactor polling for I/O between turns as it does in a "
        f"server); time from starting them to the last one ending, divided by {N * ROUNDS:,}. "
        f"Rows take turns after a warm-up turn each; median of {REPEATS} timings. CPU is "
        "`time.process_time`, wall `time.perf_counter`.",
        "",
        "| what | µs per resume, CPU | µs per resume, wall | × floor (CPU) |",
        "| --- | ---: | ---: | ---: |",
        f"| floor: a bare `reactor.callLater(0, f)` whose `f` schedules the next one "
        f"| {floor['cpu']:.2f} | {floor['wall']:.2f} | 1.00 |",
        f"| a bare generator resumed by `reactor.callLater(0, step)` "
        f"| {times['generator']['cpu']:.2f} | {times['generator']['wall']:.2f} "
        f"| {times['generator']['cpu'] / floor['cpu']:.2f} |",
        f"| evasync driver: `yield 0` in a driven generator "
        f"| {times['driver']['cpu']:.2f} | {times['driver']['wall']:.2f} "
        f"| {times['driver']['cpu'] / floor['cpu']:.2f} |",
        f"| evasync driver: `await sleep(0)` in a driven coroutine "
        f"| {times['driver, coroutine']['cpu']:.2f} | {times['driver, coroutine']['wall']:.2f} "
        f"| {times['driver, coroutine']['cpu'] / floor['cpu']:.2f} |",
        "",
        _driver_share(times),
        "",
    ]
    return "\n".join(lines)
