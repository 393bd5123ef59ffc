"""What a ``delay`` costs: adding and firing on the real reactor, persistent adds, ``load()``.

Run with ``make bench`` or ``.venv/bin/python -m bench delay``; writes ``bench/results/delay.md``.

The real reactor runs once per process, so every measurement runs in a fresh child process
(``python -c "from bench.bench_delay import worker; worker()" <phase> <args>``) that prints one
JSON line. For a given N, raw ``reactor.callLater`` (the floor) and ``evasync.delay`` are measured
in the same process and the same reactor run, in alternating rounds.

``task.Clock`` is no floor: it re-sorts all its calls on every ``callLater``, O(n) per task.
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
from typing import Any

from bench._machine import describe as describe_machine

ROOT = pathlib.Path(__file__).resolve().parent.parent

PENDING = (1_000, 10_000, 100_000, 1_000_000)
#: Rounds of each kind per N: more for small N, whose rounds are short and noisy.
ROUNDS = {1_000: 31, 10_000: 11, 100_000: 5, 1_000_000: 3}
#: Delays are spread at random over this many seconds, so the reactor's heap sees a realistic
#: mix of due times; the add loop then waits (untimed) until all are due, and firing is timed.
SPREAD = 0.05

PERSISTENT_ADDS = 20_000
PERSISTENT_BACKLOG = 100_000
STORED = (1_000, 10_000, 100_000)

TARGET_RATIO = 3.0
#: "Flat": from the smallest N to the largest, ``delay``'s cost per task may grow at most this many
#: times as much as the floor's (which grows too: see the report).
FLAT_TREND = 1.25
TARGET_ADDS_PER_S = 20_000
TARGET_LOAD_S = 2.0


def noop(*args: Any, **kwargs: Any) -> None:
    """The persistent tasks' callback (module-level, so the store can name it)."""


# -- child processes ---------------------------------------------------------------------------

def worker() -> None:
    """Entry point of a child process: run the phase named in ``sys.argv`` and print its JSON."""
    phase, *args = sys.argv[1:]
    result = {"nonpersistent": _nonpersistent, "persistent": _persistent,
              "prepare": _prepare, "load": _load}[phase](*args)
    print(json.dumps(result), flush=True)


def _runtime(db_path: str) -> Any:
    from evasync.runtime import Runtime, set_runtime

    runtime = Runtime(db_path=db_path)  # the real reactor
    set_runtime(runtime)
    return runtime


def _nonpersistent(n: str) -> dict:
    """Median µs per task to add N calls and to fire them, for callLater and for delay."""
    from twisted.internet import reactor

    import evasync

    n = int(n)
    runtime = _runtime(os.path.join(tempfile.mkdtemp(prefix="evasync-bench-"), "bench.db"))
    evasync.delay(0, noop).remove()  # reserves the first block of ids outside the timing
    rng = random.Random(n)
    delays = [rng.random() * SPREAD for _ in range(n)]
    plan = [kind for _ in range(ROUNDS[n]) for kind in ("callLater", "delay")]
    times: dict[str, dict[str, list[float]]] = {
        kind: {"add": [], "fire": []} for kind in ("callLater", "delay")}
    state: dict[str, Any] = {}

    def fired() -> None:
        state["left"] -= 1
        if not state["left"]:
            state["fired"] = time.perf_counter()
            reactor.callLater(0, next_round)

    def next_round() -> None:
        if "kind" in state:
            kind = state["kind"]
            times[kind]["add"].append((state["added"] - state["start"]) / n * 1e6)
            times[kind]["fire"].append((state["fired"] - state["due"]) / n * 1e6)
        if not plan:
            reactor.stop()
            return
        kind = state["kind"] = plan.pop(0)
        add = reactor.callLater if kind == "callLater" else evasync.delay
        gc.collect()
        state["left"] = n
        state["start"] = time.perf_counter()
        for seconds in delays:
            add(seconds, fired)
        state["added"] = time.perf_counter()
        time.sleep(max(0.0, SPREAD - (state["added"] - state["start"])) + 0.001)
        state["due"] = time.perf_counter()  # every call is due now; the reactor fires them next

    reactor.callWhenRunning(next_round)
    reactor.run()
    runtime.close()
    return {kind: {step: statistics.median(values) for step, values in steps.items()}
            for kind, steps in times.items()}


def _persistent(db_path: str) -> dict:
    """Persistent adds per second into an empty store, then on top of PERSISTENT_BACKLOG."""
    import evasync

    runtime = _runtime(db_path)
    evasync.delay(0, noop).remove()
    result = {}
    for stored_before in (0, PERSISTENT_BACKLOG):
        while len(runtime.tasks) < stored_before:
            evasync.delay(3600, noop, persistent=True)
        gc.collect()
        start = time.perf_counter()
        for i in range(PERSISTENT_ADDS):
            evasync.delay(3600 + i, noop, i, "kettle", temperature=90, persistent=True)
        result[str(stored_before)] = PERSISTENT_ADDS / (time.perf_counter() - start)
    runtime.close()
    return result


def _prepare(db_path: str, n: str, when: str) -> dict:
    """Store N persistent tasks, due in an hour (``future``) or already due (``overdue``)."""
    import evasync

    runtime = _runtime(db_path)
    seconds = 3600.0 if when == "future" else 0.0
    for i in range(int(n)):
        evasync.delay(seconds + i / 1000, noop, i, "kettle", temperature=90, persistent=True)
    runtime.close()
    return {}


def _load(db_path: str) -> dict:
    """Seconds for ``load()`` in a fresh process, opening (and checking) the store included."""
    runtime = _runtime(db_path)
    gc.collect()
    start = time.perf_counter()
    loaded = runtime.tasks.load()
    seconds = time.perf_counter() - start
    runtime.close()
    return {"loaded": loaded, "seconds": seconds}


# -- the parent: run the phases, write the Markdown ---------------------------------------------

def _run(*args: str) -> dict:
    command = [sys.executable, "-c", "from bench.bench_delay import worker; worker()", *args]
    done = subprocess.run(command, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE)
    return json.loads(done.stdout.splitlines()[-1])


def main(results: pathlib.Path) -> None:
    """Measure everything and write ``results / "delay.md"``."""
    rows = []
    for n in PENDING:
        print(f"   non-persistent, N={n:,}", flush=True)
        rows.append((n, _run("nonpersistent", str(n))))
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as tmp:
        print(f"   persistent adds", flush=True)
        adds = _run("persistent", os.path.join(tmp, "adds.db"))
        loads = []
        for n in STORED:
            print(f"   load(), N={n:,}", flush=True)
            timings = {}
            for when in ("future", "overdue"):
                path = os.path.join(tmp, f"load-{n}-{when}.db")
                _run("prepare", path, str(n), when)
                result = _run("load", path)
                assert result["loaded"] == n, result
                timings[when] = result["seconds"]
            loads.append((n, timings))
    text = _report(rows, adds, loads)
    (results / "delay.md").write_text(text)
    print(text)


def _report(rows: list, adds: dict, loads: list) -> str:
    def total(result: dict, kind: str) -> float:
        return result[kind]["add"] + result[kind]["fire"]

    ratios = [total(r, "delay") / total(r, "callLater") for _, r in rows]
    delay_totals = [total(r, "delay") for _, r in rows]
    floor_totals = [total(r, "callLater") for _, r in rows]
    lines = [
        "# `delay` benchmark",
        "",
        f"Produced by `make bench` (or `.venv/bin/python -m bench delay`) on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, by `bench/bench_delay.py`.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        "## Non-persistent delays on the real reactor",
        "",
        f"N calls are added with delays spread at random over {SPREAD * 1000:.0f} ms, so N are "
        "pending at once; once all are due the reactor fires them. *add* is the add loop, *fire* "
        "the time from all being due to the last callback having run (it includes the reactor "
        "moving new calls into its heap). Each N runs in its own process on the real reactor "
        f"(`{_reactor_name()}`), raw `reactor.callLater` (the floor) and `evasync.delay` in "
        "alternating rounds of the same reactor run; figures are medians (of "
        f"{', '.join(f'{r} rounds at {n:,}' for n, r in ROUNDS.items())}), in µs per task. "
        "The garbage collector is left on, as in a server. Other processes may share the "
        "machine during a run; alternating the rounds gives both the same conditions.",
        "",
        "| pending N | callLater add | callLater fire | **callLater total** "
        "| delay add | delay fire | **delay total** | delay / floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (n, result), ratio in zip(rows, ratios):
        floor, ours = result["callLater"], result["delay"]
        lines.append(f"| {n:,} | {floor['add']:.2f} | {floor['fire']:.2f} "
                     f"| **{total(result, 'callLater'):.2f}** | {ours['add']:.2f} "
                     f"| {ours['fire']:.2f} | **{total(result, 'delay'):.2f}** | {ratio:.2f}x |")
    flat = ratios[-1] <= FLAT_TREND * ratios[0]
    lines += [
        "",
        f"Target, within {TARGET_RATIO:.0f}x of the floor at every N: "
        f"**{'met' if max(ratios) <= TARGET_RATIO else 'MISSED'}** (from {min(ratios):.2f}x to "
        f"{max(ratios):.2f}x).",
        "",
        f"Target, flat from {PENDING[0]:,} to {PENDING[-1]:,} pending: "
        f"**{'met' if flat else 'MISSED'}**. The floor itself is not flat (the reactor's heap is "
        "O(log N), a million pending calls no longer fit in the CPU caches, and the garbage "
        "collector has more live objects to walk), so flat is judged against it: `delay` may "
        f"grow at most {FLAT_TREND}x as much as `callLater` from the smallest N to the largest. "
        f"`delay` went from {delay_totals[0]:.1f} to {delay_totals[-1]:.1f} µs per task "
        f"(x{delay_totals[-1] / delay_totals[0]:.1f}), `callLater` from {floor_totals[0]:.1f} "
        f"to {floor_totals[-1]:.1f} µs (x{floor_totals[-1] / floor_totals[0]:.1f}). Nothing in "
        "`delay` looks at the other pending tasks; it keeps two more objects per pending call "
        "than `callLater` (its task and the DelayedCall's argument tuple), which is what the "
        "garbage collector makes visible in the middle of the range.",
        "",
        "## Persistent adds",
        "",
        "`delay(3600 + i, noop, i, \"kettle\", temperature=90, persistent=True)` in a loop. Each "
        "add is its own committed SQLite transaction before `delay` returns (WAL, "
        "`synchronous=NORMAL`: it survives the process being killed; an OS crash or power loss "
        "may lose the last commits).",
        "",
        "| tasks already stored | adds timed | adds per second |",
        "|---:|---:|---:|",
    ]
    for stored_before, per_second in adds.items():
        lines.append(f"| {int(stored_before):,} | {PERSISTENT_ADDS:,} | {per_second:,.0f} |")
    worst = min(adds.values())
    lines += [
        "",
        f"Target: at least {TARGET_ADDS_PER_S:,} durable adds/s: "
        f"**{'met' if worst >= TARGET_ADDS_PER_S else 'MISSED'}** (slowest {worst:,.0f}/s).",
        "",
        "## `load()`",
        "",
        "Seconds for `TASK_HANDLER.load()` in a fresh process on the real reactor, opening and "
        "checking the store included: restoring N stored tasks (module-level callback, three "
        "arguments) and scheduling each, either due in the future (one `callLater` each) or "
        "already overdue (queued to fire in due order).",
        "",
        "| stored tasks | due in the future | overdue |",
        "|---:|---:|---:|",
    ]
    for n, timings in loads:
        lines.append(f"| {n:,} | {timings['future']:.3f} s | {timings['overdue']:.3f} s |")
    slowest = max(loads[-1][1].values())
    lines += [
        "",
        f"Target: {STORED[-1]:,} stored tasks loaded in under {TARGET_LOAD_S:.0f} s: "
        f"**{'met' if slowest < TARGET_LOAD_S else 'MISSED'}** ({slowest:.2f} s).",
        "",
    ]
    return "\n".join(lines)


def _reactor_name() -> str:
    command = [sys.executable, "-c",
               "from twisted.internet import reactor; print(type(reactor).__name__)"]
    return subprocess.run(command, check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
