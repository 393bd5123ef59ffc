"""Virtual time at scale: ``VirtualRuntime`` adding and advancing N delays, beside a bare heap clock.

Run with ``make bench`` or ``.venv/bin/python -m bench virtual_time``; writes
``bench/results/virtual_time.md``.

One timing: N ``evasync.delay(d, noop)`` calls, the ``d`` spread at random over 100 s, then one
advance of 101 s that fires them all. Rows, in alternating rounds of the same process (one process
per N):

* ``VirtualRuntime`` (its :class:`~evasync.testing.VirtualClock`), what users' tests run on;
* the floor: the same runtime code on a minimal ``heapq`` clock (``bench/_heapclock.py``);
* up to N=10,000, the runtime on ``twisted.internet.task.Clock`` advanced step by step as
  ``VirtualRuntime`` did before it had a clock of its own.

The clocks alone (``callLater`` N times, then advance) are timed the same way, for reference.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

from bench._machine import describe as describe_machine, load, load_note

ROOT = pathlib.Path(__file__).resolve().parent.parent

SIZES = (1_000, 10_000, 100_000)
#: Timings per row at each N (the median is reported); more where a timing is short and noisy.
REPEATS = {1_000: 21, 10_000: 11, 100_000: 5}
SPREAD = 100.0
TARGET_SECONDS_AT_1E5 = 1.5
TARGET_RATIO = 1.3
FLAT_TREND = 1.25


def noop(*args: Any) -> None:
    """The callback of every delay."""


def _stepping_advance(clock: Any, seconds: float) -> None:
    """``VirtualRuntime.advance`` as it was on ``task.Clock``: step from due call to due call."""
    target = clock.seconds() + seconds
    while True:
        due = min((call.getTime() for call in clock.getDelayedCalls()), default=None)
        if due is None or due > target:
            break
        clock.advance(max(0.0, due - clock.seconds()))
    clock.advance(target - clock.seconds())


def _runtime_timing(make_clock: Callable[[], Any], advance: Callable[[Any, float], None],
                    delays: list[float], folder: str) -> tuple[float, float]:
    from evasync import delay
    from evasync.runtime import Runtime, use_runtime

    clock = make_clock()
    runtime = Runtime(clock=clock, db_path=os.path.join(folder, "bench.db"))
    try:
        with use_runtime(runtime):
            delay(0, noop).remove()  # reserves the first block of task ids, untimed
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            for seconds in delays:
                delay(seconds, noop)
            advance(clock, SPREAD + 1)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert len(runtime.tasks) == 0
    finally:
        runtime.close()
    return wall, cpu


def _clock_timing(make_clock: Callable[[], Any], advance: Callable[[Any, float], None],
                  delays: list[float], folder: str) -> tuple[float, float]:
    clock = make_clock()
    fired = []
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    call_later = clock.callLater
    for seconds in delays:
        call_later(seconds, fired.append, None)
    advance(clock, SPREAD + 1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(fired) == len(delays)
    return wall, cpu


def worker() -> None:
    """Child process: time every row at the N in ``sys.argv[1]``; print one JSON line."""
    from twisted.internet.task import Clock

    from bench._heapclock import HeapClock
    from evasync.testing import VirtualClock

    n = int(sys.argv[1])
    rng = random.Random(n)
    delays = [rng.random() * SPREAD for _ in range(n)]
    plain = lambda clock, seconds: clock.advance(seconds)  # noqa: E731
    rows: dict[str, tuple[Callable, Callable, Callable]] = {
        "runtime:virtual": (_runtime_timing, VirtualClock, plain),
        "runtime:heap": (_runtime_timing, HeapClock, plain),
        "clock:virtual": (_clock_timing, VirtualClock, plain),
        "clock:heap": (_clock_timing, HeapClock, plain),
    }
    if n <= 10_000:  # task.Clock alone is quadratic: at 1,000 only
        rows["runtime:task.Clock"] = (_runtime_timing, Clock, _stepping_advance)
    if n <= 1_000:
        rows["clock:task.Clock"] = (_clock_timing, Clock, _stepping_advance)
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in rows}
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as folder:
        for name, (timing, make_clock, advance) in rows.items():  # warm-up turn, not kept
            timing(make_clock, advance, delays[:1000], folder)
        for _ in range(REPEATS[n]):
            for name, (timing, make_clock, advance) in rows.items():
                wall, cpu = timing(make_clock, advance, delays, folder)
                samples[name]["wall"].append(wall / n * 1e6)
                samples[name]["cpu"].append(cpu / n * 1e6)
    print(json.dumps({name: {kind: statistics.median(values) for kind, values in s.items()}
                      for name, s in samples.items()}), flush=True)


def main(results: pathlib.Path) -> None:
    load_before = load()
    measured = {}
    for n in SIZES:
        print(f"   N={n:,} ({REPEATS[n]} timings per row)", flush=True)
        done = subprocess.run(
            [sys.executable, "-c", "from bench.bench_virtual_time import worker; worker()",
             str(n)], cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE)
        measured[n] = json.loads(done.stdout.splitlines()[-1])
    text = _report(measured, load_before, load())
    (results / "virtual_time.md").write_text(text)
    print(text)


def _report(measured: dict[int, dict], load_before: str, load_after: str) -> str:
    first, last = SIZES[0], SIZES[-1]

    def us(n: int, row: str, kind: str = "cpu") -> float:
        return measured[n][row][kind]

    lines = [
        "# Virtual time at scale: `VirtualRuntime` with N delays",
        "",
        "Produced by `.venv/bin/python -m bench virtual_time` (`bench/bench_virtual_time.py`, "
        f"also part of `make bench`) on {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        load_note(load_before, load_after),
        "",
        f"One timing: N `evasync.delay(d, noop)` calls with `d` spread at random over "
        f"{SPREAD:g} s, then one advance of {SPREAD + 1:g} s that fires every one of them "
        "(runtime made and closed outside the timing; the garbage collector on, as in a test "
        "suite). Each N runs in its own process; the rows take turns, after a warm-up turn "
        "each, and each figure is the median of "
        f"{', '.join(f'{REPEATS[n]} timings at N={n:,}' for n in SIZES)}. Figures are µs per "
        "delay: process CPU time (`time.process_time`), the wall clock (`time.perf_counter`) "
        "beside it. The floor is the same runtime on a minimal `heapq` clock "
        "(`bench/_heapclock.py`: no `reset`/`delay`, no keyword arguments, no FIFO promise).",
        "",
        "| N | `VirtualRuntime` µs/delay (wall) | floor: runtime on a bare heap clock µs/delay "
        "(wall) | × floor | N delays in (CPU s) | runtime on `task.Clock`, stepped µs/delay |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        ours, floor = us(n, "runtime:virtual"), us(n, "runtime:heap")
        before = measured[n].get("runtime:task.Clock")
        lines.append(
            f"| {n:,} | {ours:.2f} ({us(n, 'runtime:virtual', 'wall'):.2f}) | {floor:.2f} "
            f"({us(n, 'runtime:heap', 'wall'):.2f}) | {ours / floor:.2f}x "
            f"| {ours * n / 1e6:.3f} | "
            f"{'—' if before is None else format(before['cpu'], '.1f')} |")
    lines += [
        "",
        "Pending delays share one call of the runtime's clock (`evasync/_timers.py` keeps them "
        "in a heap of its own), so the clock under a runtime holds one call at a time and even "
        "`task.Clock` copes there. Code that schedules on the clock itself (`LoopingCall`, "
        "`deferLater`, `run_async`'s reactor executor, a game's own timers) meets the clock "
        "directly; the clocks alone (`callLater` N times, then one advance; no evasync code):",
        "",
        "| N | `VirtualClock` µs/call (wall) | bare heap clock µs/call (wall) | × floor "
        "| `task.Clock`, stepped µs/call |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        ours, floor = us(n, "clock:virtual"), us(n, "clock:heap")
        before = measured[n].get("clock:task.Clock")
        lines.append(
            f"| {n:,} | {ours:.2f} ({us(n, 'clock:virtual', 'wall'):.2f}) | {floor:.2f} "
            f"({us(n, 'clock:heap', 'wall'):.2f}) | {ours / floor:.2f}x "
            f"| {'—' if before is None else format(before['cpu'], '.1f')} |")
    total = us(last, "runtime:virtual") * last / 1e6
    ratios = [us(n, "runtime:virtual") / us(n, "runtime:heap") for n in SIZES]
    growth = us(last, "runtime:virtual") / us(first, "runtime:virtual")
    floor_growth = us(last, "runtime:heap") / us(first, "runtime:heap")
    lines += [
        "",
        f"Target, {last:,} delays added and advanced in under {TARGET_SECONDS_AT_1E5:g} s: "
        f"**{'met' if total < TARGET_SECONDS_AT_1E5 else 'NOT met'}** ({total:.2f} s of CPU, "
        f"{us(last, 'runtime:virtual', 'wall') * last / 1e6:.2f} s on the wall clock).",
        "",
        f"Target, at most {TARGET_RATIO:g}x the floor per delay at every N: "
        f"**{'met' if max(ratios) <= TARGET_RATIO else 'NOT met'}** (from {min(ratios):.2f}x "
        f"to {max(ratios):.2f}x).",
        "",
        f"Target, flat from {first:,} to {last:,}: "
        f"**{'met' if growth <= FLAT_TREND * floor_growth else 'NOT met'}**. Nothing in the "
        "clock looks at the other pending calls (O(log N) a call), but the floor itself is not "
        "flat (a bigger heap, more objects for the caches and the garbage collector), so flat "
        f"is judged against it: `VirtualRuntime` may grow at most {FLAT_TREND:g}x as much as "
        f"the floor. It went from {us(first, 'runtime:virtual'):.2f} to "
        f"{us(last, 'runtime:virtual'):.2f} µs per delay (x{growth:.2f}), the floor from "
        f"{us(first, 'runtime:heap'):.2f} to {us(last, 'runtime:heap'):.2f} µs "
        f"(x{floor_growth:.2f}).",
        "",
        "`VirtualClock` keeps what the floor leaves out: Twisted's `IDelayedCall` (`cancel`, "
        "`reset`, `delay`, `active`, `getTime`), keyword arguments, and `task.Clock`'s order "
        "for calls due at the same time (checked against `task.Clock` on random schedules by "
        "`tests/test_virtual_clock.py`).",
        "",
    ]
    return "\n".join(lines)
