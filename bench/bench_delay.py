"""What a ``delay`` costs: adding and firing, memory, persistent adds, ``load()`` and the backlog.

Run with ``make bench`` or ``.venv/bin/python -m bench delay``; writes ``bench/results/delay.md``.

The real reactor runs once per process, so every measurement runs in a fresh child process
(``python -c "from bench.bench_delay import worker; worker()" <phase> <args>``) that prints one
JSON line. Every figure has its floor measured in the same run, mostly in the same process in
alternating rounds:

* non-persistent delays: raw ``reactor.callLater``;
* memory per pending delay: a bare ``reactor.callLater`` whose handle is kept;
* persistent adds: a raw ``sqlite3`` insert + commit into a table of the same schema in the
  same file, same pragmas;
* ``load()`` and firing the overdue backlog: the same rows read, decoded and scheduled, and fired
  with a DELETE commit per chunk, by plain code.

``task.Clock`` is no floor: it re-sorts all its calls on every ``callLater``, O(n) per task.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from bench._machine import describe as describe_machine, load, load_note

ROOT = pathlib.Path(__file__).resolve().parent.parent

PENDING = (1_000, 10_000, 100_000, 1_000_000)
#: Rounds of each kind per N: more for small N, whose rounds are short and noisy.
ROUNDS = {1_000: 31, 10_000: 11, 100_000: 5, 1_000_000: 3}
#: Delays are spread at random over this many seconds, so the reactor's heap sees a realistic
#: mix of due times; the add loop then waits (untimed) until all are due, and firing is timed.
SPREAD = 0.05

MEMORY_N = 50_000
RUNS = 3  # runs (or alternating rounds) behind every median below

#: (rounds of each kind, adds per round): short rounds, the two kinds taking turns in pairs
#: that see the same machine (a shared machine's disk and caches drift within seconds); FULL,
#: which waits for the disk at every commit, in shorter and more of them.
PERSISTENT_ROUNDS = {"NORMAL": (25, 800), "FULL": (61, 25)}
PERSISTENT_BACKLOG = 100_000
STORED = (1_000, 10_000, 100_000)
OVERDUE_N = STORED[-1]  # the overdue store of the largest load is also fired

TARGET_RATIO = 3.0
#: "Flat": from the smallest N to the largest, ``delay``'s cost per task may grow at most this many
#: times as much as the floor's (which grows too: see the report).
FLAT_TREND = 1.25
TARGET_PERSISTENT_RATIO = 1.3
TARGET_MEMORY_RATIO = 1.5
TARGET_LOAD_S = 2.0

CALLED = [0]


def noop(*args: Any, **kwargs: Any) -> None:
    """The persistent tasks' callback (module-level, so the store can name it)."""


def counted(*args: Any, **kwargs: Any) -> None:
    """The overdue backlog's callback: counts its calls."""
    CALLED[0] += 1


# -- child processes ---------------------------------------------------------------------------

def worker() -> None:
    """Entry point of a child process: run the phase named in ``sys.argv`` and print its JSON."""
    phase, *args = sys.argv[1:]
    result = {"nonpersistent": _nonpersistent, "memory": _memory, "persistent": _persistent,
              "prepare": _prepare, "load": _load, "raw_load": _raw_load}[phase](*args)
    print(json.dumps(result), flush=True)


_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _runtime(db_path: str, synchronous: str | None = None) -> Any:
    """A current runtime on the real reactor, its store made with ``Store(path, synchronous)``
    (checked by reading the pragma back)."""
    from evasync.runtime import Runtime, set_runtime

    runtime = Runtime(db_path=db_path, synchronous=synchronous)  # the real reactor
    set_runtime(runtime)
    if synchronous is not None:
        found = _SYNCHRONOUS[runtime.store.conn.execute("PRAGMA synchronous").fetchone()[0]]
        assert found == synchronous, f"asked for synchronous={synchronous}, got {found}"
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


def _memory(db_path: str) -> dict:
    """Bytes per pending call: a kept ``reactor.callLater`` handle, and a non-persistent delay."""
    from twisted.internet import reactor

    import evasync

    runtime = _runtime(db_path)
    evasync.delay(0, noop).remove()

    def traced(add: Any) -> tuple[float, list]:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        handles = [add(3600, noop) for _ in range(MEMORY_N)]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / MEMORY_N, handles

    samples: dict[str, list[float]] = {"callLater": [], "delay": []}
    for _ in range(RUNS):
        per, handles = traced(reactor.callLater)
        samples["callLater"].append(per)
        for call in handles:
            call.cancel()
        per, handles = traced(evasync.delay)
        samples["delay"].append(per)
        for task in handles:
            task.remove()
    runtime.close()
    return {kind: statistics.median(values) for kind, values in samples.items()}


def _persistent(db_path: str, synchronous: str, backlogs: str) -> dict:
    """Persistent adds per second, and raw sqlite3 insert+commit per second into the same table
    with the same pragmas, in alternating rounds; at each backlog (tasks already stored)."""
    import evasync
    from evasync import _codec

    runtime = _runtime(db_path, synchronous)
    store_conn = runtime.store.conn
    pragmas = {"journal_mode": store_conn.execute("PRAGMA journal_mode").fetchone()[0],
               "synchronous": _SYNCHRONOUS[store_conn.execute("PRAGMA synchronous").fetchone()[0]]}
    assert pragmas["synchronous"] == synchronous, pragmas
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.execute(f"PRAGMA journal_mode={pragmas['journal_mode']}")
    raw.execute(f"PRAGMA synchronous={pragmas['synchronous']}")
    # A kept cursor, as the store keeps one for its inserts (conn.execute makes a new cursor
    # per call, about half a microsecond more).
    floor_cursor = raw.cursor()
    rounds, adds = PERSISTENT_ROUNDS[synchronous]
    evasync.delay(3600, noop, 0, "kettle", temperature=90, persistent=True)
    runtime.store.flush()  # from the task log into the tasks table, to be read back
    row = store_conn.execute("SELECT state, callback, args, kwargs FROM tasks").fetchone()
    first_id = store_conn.execute("SELECT id FROM tasks").fetchone()[0]
    # The floor writes into a table of its own, made from the tasks table's own schema, in the
    # same file: each kind appends consecutive ids at the end of its own table, as a game's adds
    # do (a new process takes a higher block of ids). Sharing one table, one kind would always
    # insert in the middle of the other's rows, and SQLite appends at a table's end for less.
    schema = store_conn.execute(
        "SELECT sql FROM sqlite_master WHERE type='table' AND name='tasks'").fetchone()[0]
    raw.execute(schema.replace("tasks", "floor_tasks", 1))
    raw.execute("INSERT INTO floor_tasks SELECT * FROM tasks")
    # The backlog goes below both kinds' ids (evasync's blocks start at 2**20), the same rows
    # at the same ids in both tables.
    raw_id, backlog_id = first_id, 0
    result: dict[str, Any] = {"pragmas": pragmas, "adds": adds, "rounds": rounds,
                              "backlogs": {}}
    stored = 1
    for backlog in map(int, backlogs.split(",")):
        # The backlog: rows like the timed ones, written in one transaction (its cost is not
        # what is measured: only that the tables hold that many rows).
        assert backlog < first_id, "the backlog's ids must stay below evasync's"
        raw.execute("BEGIN")
        for _ in range(backlog - stored):
            backlog_id += 1
            for table in ("tasks", "floor_tasks"):
                raw.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?)",
                            (backlog_id, 7200.0, *row))
        raw.execute("COMMIT")
        stored = backlog
        samples: dict[str, list[float]] = {"delay": [], "raw": [], "store": [], "encoded": [],
                                           "lone": []}
        # Per round of each kind: did SQLite start its WAL over (after a checkpoint) in it?
        restarted: dict[str, list[bool]] = {kind: [] for kind in samples}
        store, handler = runtime.store, runtime.tasks

        # Every kind that logs tasks moves them into the database (Store.flush) before its
        # time stops: what is timed is all the store does for them, its own transaction too.
        def timed_delays() -> None:
            for i in range(adds):
                evasync.delay(3600 + i, noop, i, "kettle", temperature=90, persistent=True)
            store.flush()

        # Batching's worst case: a flush after every add, so each is committed on its own, as
        # when a game adds fewer tasks than one per FLUSH_AFTER seconds.
        def timed_lone() -> None:
            for i in range(adds):
                evasync.delay(3600 + i, noop, i, "kettle", temperature=90, persistent=True)
                store.flush()

        def timed_raw() -> None:
            nonlocal raw_id
            for i in range(adds):
                raw_id += 1
                floor_cursor.execute("INSERT INTO floor_tasks VALUES (?, ?, ?, ?, ?, ?)",
                                     (raw_id, 3600.0 + i, *row))

        # Where delay's time goes, for the report: the store's own insert (its Python around
        # the same INSERT), then that with the callback and arguments encoded as delay() does.
        def timed_store() -> None:
            for i in range(adds):
                store.add_task(handler._new_id(), 3600.0 + i, *row)
            store.flush()

        def timed_encoded() -> None:
            for i in range(adds):
                args, kwargs = (i, "kettle"), {"temperature": 90}
                store.add_task(handler._new_id(), 3600.0 + i, "scheduled",
                               _codec.callback_text(noop, handler._trust),
                               _codec.dumps_arguments(args, noop),
                               _codec.dumps_keywords(kwargs, noop))
            store.flush()

        for round_ in range(rounds):
            # Which kind goes first alternates too: a disk's speed drifts within a round pair.
            # The breakdown's two kinds follow the pair (only where the disk does not decide).
            kinds = [("delay", timed_delays), ("raw", timed_raw)]
            kinds = kinds if round_ % 2 == 0 else kinds[::-1]
            if synchronous == "NORMAL":
                kinds += [("store", timed_store), ("encoded", timed_encoded),
                          ("lone", timed_lone)]
            for kind, timed in kinds:
                gc.collect()
                before = _wal_restarts(db_path)
                start = time.perf_counter()
                timed()
                samples[kind].append(adds / (time.perf_counter() - start))
                restarted[kind].append(_wal_restarts(db_path) != before)
        stored += rounds * adds  # in each table
        result["backlogs"][str(backlog)] = {
            **{k: statistics.median(v) for k, v in samples.items() if v},
            "ranges": {k: (min(v), max(v)) for k, v in samples.items() if v},
            # Each pair's time ratio (rates are adds per second: raw rate / delay rate).
            "ratio": statistics.median(raw / ours for ours, raw in zip(samples["delay"],
                                                                       samples["raw"])),
            # All of delay's rounds' time over all of the floor's: the sustained rate, which
            # keeps what a median drops (a WAL checkpoint, a garbage collection in a round).
            "total_ratio": (sum(1 / rate for rate in samples["delay"])
                            / sum(1 / rate for rate in samples["raw"])),
            "by_checkpoint": {kind: _split_by_checkpoint(samples[kind], restarted[kind])
                              for kind in ("delay", "raw")}}
    floor_cursor.close()
    raw.close()
    runtime.close()
    return result


def _wal_restarts(db_path: str) -> int:
    """How many times SQLite has started the WAL file over (its header's checkpoint sequence
    number, which goes up by one each time the WAL restarts after a complete checkpoint)."""
    try:
        with open(db_path + "-wal", "rb") as wal:
            header = wal.read(16)
    except FileNotFoundError:
        return 0
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0


def _split_by_checkpoint(rates: list[float], restarted: list[bool]) -> dict:
    """Median µs per add of the rounds in which the WAL restarted (a checkpoint ran in them,
    or just before) and of the others, with how many rounds each."""
    split: dict[str, Any] = {}
    for name, flag in (("checkpoint", True), ("none", False)):
        times = [1e6 / rate for rate, was in zip(rates, restarted) if was is flag]
        split[name] = (statistics.median(times) if times else None, len(times))
    return split


def _prepare(db_path: str, n: str, when: str) -> dict:
    """Store N persistent tasks, due in an hour (``future``) or already due (``overdue``)."""
    import evasync

    runtime = _runtime(db_path)
    # Due over the next 100 s, or over the next 10 ms (long past when the load starts).
    seconds, step = (3600.0, 1e-3) if when == "future" else (0.0, 1e-7)
    callback = noop if when == "future" else counted
    for i in range(int(n)):
        evasync.delay(seconds + i * step, callback, i, "kettle", temperature=90,
                      persistent=True)
    runtime.close()
    return {}


class _GcTimer:
    """Seconds spent in the garbage collector while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def __enter__(self) -> "_GcTimer":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.callbacks.remove(self)


def _load(db_path: str, fire: str) -> dict:
    """``load()`` in a fresh process (opening and checking the store included); with ``fire``,
    then the reactor runs until every overdue task has fired and its DELETE is committed."""
    from twisted.internet import reactor

    runtime = _runtime(db_path)
    gc.collect()
    result: dict[str, Any] = {}
    with _GcTimer() as load_gc:
        start = time.perf_counter()
        result["loaded"] = runtime.tasks.load()
        result["load"] = time.perf_counter() - start
    result["load_gc"] = load_gc.seconds
    result["load_gc_passes"] = load_gc.collections
    if fire == "fire":
        expected = result["loaded"]
        fire_gc = _GcTimer()

        def finish():
            if CALLED[0] < expected:
                reactor.callLater(0.001, finish)  # polls only until the last chunk ran
                return
            result["fire"] = time.perf_counter() - start
            fire_gc.__exit__()
            result["fire_gc"] = fire_gc.seconds
            result["left_stored"] = runtime.store.conn.execute(
                "SELECT count(*) FROM tasks").fetchone()[0]
            reactor.stop()

        def begin():
            nonlocal start
            fire_gc.__enter__()
            start = time.perf_counter()
            reactor.callLater(0.001, finish)

        reactor.callWhenRunning(begin)
        reactor.run()
        result["fired"] = CALLED[0]
    runtime.close()
    return result


def _raw_load(db_path: str, fire: str) -> dict:
    """The floor of ``_load``: the same rows read, decoded (``json.loads``, a callback text once)
    and scheduled (one ``callLater`` each if due later, a list if overdue); with ``fire``, each
    overdue chunk called and deleted with one commit per chunk, one chunk per reactor turn."""
    from twisted.internet import reactor

    from evasync.tasks import OVERDUE_CHUNK

    gc.collect()
    result: dict[str, Any] = {}
    with _GcTimer() as load_gc:
        start = time.perf_counter()
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        now = time.time()
        overdue, calls = [], []
        callbacks: dict[str, Any] = {}
        for task_id, due, state, callback, args, kwargs in conn.execute(
                "SELECT id, due, state, callback, args, kwargs FROM tasks ORDER BY due, id"):
            decoded = callbacks.get(callback)
            if decoded is None:
                decoded = callbacks[callback] = json.loads(callback)
            item = (task_id, decoded, json.loads(args), json.loads(kwargs))
            if due <= now:
                overdue.append(item)
            else:
                calls.append(reactor.callLater(due - now, noop, item))
        result["loaded"] = len(overdue) + len(calls)
        result["load"] = time.perf_counter() - start
    result["load_gc"] = load_gc.seconds
    result["load_gc_passes"] = load_gc.collections
    for call in calls:
        call.cancel()
    if fire == "fire":
        fire_gc = _GcTimer()

        def chunk(first: int) -> None:
            batch = overdue[first:first + OVERDUE_CHUNK]
            for task_id, _, args, kwargs in batch:
                counted(*args, **kwargs)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM tasks WHERE id=?", ((item[0],) for item in batch))
            conn.execute("COMMIT")
            if first + OVERDUE_CHUNK < len(overdue):
                reactor.callLater(0, chunk, first + OVERDUE_CHUNK)
            else:
                result["fire"] = time.perf_counter() - start
                fire_gc.__exit__()
                result["fire_gc"] = fire_gc.seconds
                result["left_stored"] = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
                reactor.stop()

        def begin():
            nonlocal start
            fire_gc.__enter__()
            start = time.perf_counter()
            reactor.callLater(0, chunk, 0)

        reactor.callWhenRunning(begin)
        reactor.run()
        result["fired"] = CALLED[0]
    conn.close()
    return result


# -- the parent: run the phases, write the Markdown ---------------------------------------------

def _run(*args: str) -> dict:
    command = [sys.executable, "-c", "from bench.bench_delay import worker; worker()", *args]
    done = subprocess.run(command, cwd=ROOT, check=True, text=True, stdout=subprocess.PIPE)
    return json.loads(done.stdout.splitlines()[-1])


def _median_of_runs(*args: str, source: str, tmp: str) -> dict:
    """RUNS runs of a load phase, each on a fresh copy of ``source``; the median of each figure."""
    runs = []
    for i in range(RUNS):
        copy = os.path.join(tmp, f"copy-{i}.db")
        shutil.copyfile(source, copy)
        runs.append(_run(args[0], copy, *args[1:]))
        os.remove(copy)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


class _Progress:
    """Prints each phase and how long it took (a full run takes minutes)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"   [{time.perf_counter() - self.started:5.0f} s] {text}", flush=True)


def main(results: pathlib.Path) -> None:
    """Measure everything and write ``results / "delay.md"``."""
    load_before = load()
    progress = _Progress()
    rows = []
    for n in PENDING:
        progress(f"non-persistent, N={n:,} ({ROUNDS[n]} rounds of each)")
        rows.append((n, _run("nonpersistent", str(n))))
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as tmp:
        progress(f"memory per pending delay ({MEMORY_N:,} pending)")
        memory = _run("memory", os.path.join(tmp, "memory.db"))
        progress(f"persistent adds, synchronous=NORMAL, then {PERSISTENT_BACKLOG:,} stored")
        adds = {"NORMAL": _run("persistent", os.path.join(tmp, "adds.db"), "NORMAL",
                               f"0,{PERSISTENT_BACKLOG}")}
        progress("persistent adds, synchronous=FULL")
        adds["FULL"] = _run("persistent", os.path.join(tmp, "adds-full.db"), "FULL", "0")
        loads = []
        for n in STORED:
            timings = {}
            for when in ("future", "overdue"):
                progress(f"load(), {n:,} {when} tasks: storing them")
                path = os.path.join(tmp, f"load-{n}-{when}.db")
                _run("prepare", path, str(n), when)
                progress(f"load(), {n:,} {when} tasks: {RUNS} runs")
                if n == OVERDUE_N and when == "overdue":
                    backlog = {"evasync": _median_of_runs("load", "fire", source=path, tmp=tmp)}
                    timings[when] = backlog["evasync"]
                    progress(f"its floor, {RUNS} runs")
                    backlog["floor"] = _median_of_runs("raw_load", "fire", source=path, tmp=tmp)
                    for figures in backlog.values():
                        assert figures["fired"] == n and figures["left_stored"] == 0, figures
                else:
                    timings[when] = _median_of_runs("load", "load", source=path, tmp=tmp)
                if n == STORED[-1] and when == "future":
                    progress(f"its floor, {RUNS} runs")
                    timings["floor"] = _median_of_runs("raw_load", "load", source=path, tmp=tmp)
                assert timings[when]["loaded"] == n, timings[when]
                os.remove(path)
            loads.append((n, timings))
    progress("done")
    text = _report(rows, memory, adds, loads, backlog, load_before, load())
    (results / "delay.md").write_text(text)
    print(text)


def _report(rows: list, memory: dict, adds: dict, loads: list, backlog: dict,
            load_before: str, load_after: str) -> str:
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
        load_note(load_before, load_after),
        "",
        f"Every measurement runs in a fresh process on the real reactor (`{_reactor_name()}`), "
        "with the garbage collector on, as in a server; times are wall-clock "
        "(`time.perf_counter`).",
        "",
        "## Non-persistent delays on the real reactor",
        "",
        f"N calls are added with delays spread at random over {SPREAD * 1000:.0f} ms, so N are "
        "pending at once; once all are due the reactor fires them. *add* is the add loop, *fire* "
        "the time from all being due to the last callback having run (it includes the reactor "
        "moving new calls into its heap). Raw `reactor.callLater` (the floor) and "
        "`evasync.delay` run in alternating rounds of the same reactor run; figures are medians "
        f"(of {', '.join(f'{r} rounds at {n:,}' for n, r in ROUNDS.items())}), in µs per task.",
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
        f"**{'met' if max(ratios) <= TARGET_RATIO else 'NOT met'}** (from {min(ratios):.2f}x "
        f"to {max(ratios):.2f}x).",
        "",
        f"Target, flat from {PENDING[0]:,} to {PENDING[-1]:,} pending: "
        f"**{'met' if flat else 'NOT met'}**. The floor itself is not flat (the reactor's heap "
        "is O(log N), a million pending calls no longer fit in the CPU caches, and the garbage "
        "collector has more live objects to walk), so flat is judged against it: `delay` may "
        f"grow at most {FLAT_TREND}x as much as `callLater` from the smallest N to the largest. "
        f"`delay` went from {delay_totals[0]:.1f} to {delay_totals[-1]:.1f} µs per task "
        f"(x{delay_totals[-1] / delay_totals[0]:.1f}), `callLater` from {floor_totals[0]:.1f} "
        f"to {floor_totals[-1]:.1f} µs (x{floor_totals[-1] / floor_totals[0]:.1f}).",
        "",
        "## Memory per pending delay",
        "",
        f"`tracemalloc` bytes after minus before adding {MEMORY_N:,} calls due in an hour, each "
        "handle kept in a list (garbage collected at both ends), divided by their number; "
        f"median of {RUNS} measurements, the two kinds taking turns.",
        "",
        "| what | bytes per pending call | × floor |",
        "| --- | ---: | ---: |",
        f"| floor: `reactor.callLater(3600, noop)`, its handle kept | {memory['callLater']:,.0f} "
        "| 1.00 |",
        f"| `evasync.delay(3600, noop)` (non-persistent), its handle kept "
        f"| {memory['delay']:,.0f} | {memory['delay'] / memory['callLater']:.2f} |",
        "",
        f"Target, at most {TARGET_MEMORY_RATIO:g}x the floor: "
        f"**{'met' if memory['delay'] <= TARGET_MEMORY_RATIO * memory['callLater'] else 'NOT met'}"
        f"** ({memory['delay'] / memory['callLater']:.2f}x).",
        "",
        "## Persistent adds",
        "",
        "`delay(3600 + i, noop, i, \"kettle\", temperature=90, persistent=True)` in a loop, "
        "then `Store.flush()`: the round's first add is committed on its own, and each one after "
        "it appends its row to the store's task log (one `write()` of a line, as durable as a "
        "commit with the same `synchronous`) before `delay` returns, "
        "and the flush moves the round's rows into the database in one transaction; both are "
        "timed. The floor: a raw "
        "`sqlite3` `INSERT` of the same row, through a kept cursor as the store's own, into a "
        "table made from the same schema in the same file (each kind appends consecutive ids "
        "at the end of its own table, as a game's adds do, above the same backlog rows), in "
        "autocommit mode (an insert + commit each), with the same pragmas, in alternating "
        "rounds (which kind goes first alternating too). Rates are the medians of the rounds. "
        "Two ratios: the median of each round pair's ratio (the "
        "two rounds of a pair run one after the other, on the same machine state), and all of "
        "`delay`'s rounds' time over all of the floor's (the sustained rate: it keeps the "
        "rounds a median drops, such as one where SQLite checkpointed its WAL or Python "
        "collected garbage). The target is judged on the larger.",
        "",
        "- `synchronous=NORMAL` (WAL), the default: a logged add (or a committed row) survives "
        "the process being killed (SIGKILL included), **not an operating-system crash or power "
        "loss**, which may lose the last ones.",
        "- `synchronous=FULL` (WAL): every logged add (`fdatasync`) and every commit is synced to "
        "disk before `delay` returns, so it "
        "also survives an OS crash or power loss; each add waits for the disk, whose flush time "
        "on a shared machine can change tenfold within seconds (see the ranges): compare the "
        "two kinds' medians, taken in alternating rounds, not figures of different runs.",
        "",
        "| synchronous (as read back) | journal | tasks already stored | rounds × adds "
        "| `delay` adds/s (rounds' range) | floor: raw insert+commit/s (rounds' range) "
        "| delay time / floor time (median of pairs) | (all rounds) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    persistent_ratios = {}
    for sync, result in adds.items():
        for backlog_n, rates in result["backlogs"].items():
            ratio, total = rates["ratio"], rates["total_ratio"]
            persistent_ratios[(sync, backlog_n)] = max(ratio, total)
            ranges = rates["ranges"]
            lines.append(f"| {result['pragmas']['synchronous']} "
                         f"| {result['pragmas']['journal_mode']} | {int(backlog_n):,} "
                         f"| {result['rounds']} × {result['adds']:,} "
                         f"| {rates['delay']:,.0f} ({ranges['delay'][0]:,.0f}–"
                         f"{ranges['delay'][1]:,.0f}) | {rates['raw']:,.0f} "
                         f"({ranges['raw'][0]:,.0f}–{ranges['raw'][1]:,.0f}) | {ratio:.2f}x "
                         f"| {total:.2f}x |")
    worst = max(persistent_ratios.values())
    # Where the time above the floor goes, from the breakdown's kinds (µs per add).
    breakdown = []
    for backlog_n, rates in adds["NORMAL"]["backlogs"].items():
        t = {kind: 1e6 / rates[kind] for kind in ("delay", "raw", "store", "encoded")}
        breakdown.append(
            f"| {int(backlog_n):,} | {t['raw']:.1f} | {t['store'] - t['raw']:+.1f} "
            f"| {t['encoded'] - t['store']:+.1f} | {t['delay'] - t['encoded']:+.1f} "
            f"| {t['delay']:.1f} |")
    conservative, lone = [], []
    for sync, result in adds.items():
        for backlog_n, rates in result["backlogs"].items():
            floor_none = rates["by_checkpoint"]["raw"]["none"][0]
            if floor_none:
                conservative.append(f"{1e6 / rates['delay'] / floor_none:.2f}x ({sync}, "
                                    f"{int(backlog_n):,} stored)")
            if "lone" in rates:
                lone.append(f"{1e6 / rates['lone']:.1f} µs against {1e6 / rates['raw']:.1f} "
                            f"({rates['raw'] / rates['lone']:.2f}x; {sync}, "
                            f"{int(backlog_n):,} stored)")
    checkpoints = []
    for sync, result in adds.items():
        for backlog_n, rates in result["backlogs"].items():
            cells = []
            for kind in ("raw", "delay"):
                for name in ("none", "checkpoint"):
                    median, count = rates["by_checkpoint"][kind][name]
                    cells.append(f"{median:.1f} ({count})" if count else "– (0)")
            checkpoints.append(f"| {sync} | {int(backlog_n):,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Target, persistent add within {TARGET_PERSISTENT_RATIO:g}x the raw insert+commit with "
        f"the same pragmas: **{'met' if worst <= TARGET_PERSISTENT_RATIO else 'NOT met'}** "
        f"(up to {worst:.2f}x). With `synchronous=NORMAL` an add is durable against the process "
        "dying, not against an OS crash or power loss; `synchronous=FULL` is the setting for "
        "that.",
        "",
        "Where `delay`'s time goes (`synchronous=NORMAL`, µs per add, medians "
        "of rounds run right after each pair above): the store's own calls for the same rows "
        "(`Store.add_task`, with the texts made in advance, then `Store.flush()`), then with "
        "the callback and "
        "arguments encoded as `delay()` encodes them; the rest is `delay()` itself: checking "
        "its arguments, the `Task`, its id and its place among the timers.",
        "",
        "| tasks already stored | floor: raw insert+commit | the store's calls (± the floor) "
        "| + encoding "
        "| + the task and its timer | = `delay` |",
        "|---:|---:|---:|---:|---:|---:|",
        *breakdown,
        "",
        "Why the rounds' ranges are wide: in WAL mode SQLite copies the WAL back into the "
        "database (a checkpoint) in the commit that takes the WAL past 1,000 pages, about one "
        "commit in a thousand here, and that one commit waits for it. A round in which the WAL "
        "started over (read from its header before and after the round) holds such a "
        "checkpoint; the others show the bare insert+commit. Median µs per add (rounds):",
        "",
        "| synchronous | tasks already stored | floor, no checkpoint | floor, a checkpoint "
        "| `delay`, no checkpoint | `delay`, a checkpoint |",
        "|---|---:|---:|---:|---:|---:|",
        *checkpoints,
        "",
        "The floor writes a WAL page per add (a commit each); `delay`'s round writes its rows in "
        "one transaction, a few dozen pages, so most checkpoints fall in the floor's rounds: "
        "part of what the task log saves. Judged against the floor's rounds without a "
        "checkpoint only, `delay`'s median time per add is "
        + ", ".join(conservative) + " the floor's.",
        "",
        "Batching's worst case, each add committed on its own (`delay` then "
        "`Store.flush()` for every add, as when a game adds fewer tasks than one per "
        "`FLUSH_AFTER` = 0.1 s, so that nobody waits on the speed of adds), median µs per add "
        "against the floor's: " + ", ".join(lone) + ". The target is judged on adds in a loop, "
        "as the issue measured them.",
        "",
        "The FULL rows run on `Runtime(synchronous=\"FULL\")`, whose store is "
        "`Store(path, synchronous=\"FULL\")` (`EVASYNC_SYNCHRONOUS=FULL` does the same); the "
        "*as read back* column is SQLite's own answer to `PRAGMA synchronous`.",
        "",
        "## `load()`",
        "",
        "Seconds for `TASK_HANDLER.load()` in a fresh process on the real reactor, opening and "
        "checking the store included: restoring N stored tasks (module-level callback, three "
        "arguments) and scheduling each, either due in the future (one `callLater` each) or "
        f"already overdue (queued to fire in due order). Median of {RUNS} runs, each on a fresh "
        "copy of the store.",
        "",
        "| stored tasks | due in the future | overdue |",
        "|---:|---:|---:|",
    ]
    for n, timings in loads:
        lines.append(f"| {n:,} | {timings['future']['load']:.3f} s "
                     f"| {timings['overdue']['load']:.3f} s |")
    last = loads[-1][1]
    slowest = max(last["future"]["load"], last["overdue"]["load"])
    floor = last["floor"]
    lines += [
        "",
        f"Target: {STORED[-1]:,} stored tasks loaded in under {TARGET_LOAD_S:.0f} s: "
        f"**{'met' if slowest < TARGET_LOAD_S else 'NOT met'}** ({slowest:.2f} s). The floor, "
        f"the same {STORED[-1]:,} future rows read with a raw `sqlite3` query, their text "
        "columns decoded with `json.loads` (each distinct callback once, as `load()` does) and "
        "one `callLater` each: "
        f"{floor['load']:.3f} s, so `load()` is {last['future']['load'] / floor['load']:.2f}x "
        f"its floor. Garbage collection: {last['future']['load_gc']:.3f} s of `load()` "
        f"({last['future']['load_gc'] / last['future']['load']:.0%}), "
        f"{floor['load_gc']:.3f} s of the floor "
        f"({floor['load_gc'] / floor['load']:.0%}).",
        "",
        f"## `load()` and firing {OVERDUE_N:,} overdue tasks",
        "",
        f"{OVERDUE_N:,} stored tasks already due when a fresh process starts: `load()`, then "
        "the reactor runs until every one has fired and the store is empty (the tasks fire "
        f"{_chunk()} per reactor turn, each chunk followed by the commit of its DELETE). The "
        "floor does the same with plain code: a raw query, `json.loads`, and per chunk the calls, "
        "an `executemany` DELETE and one commit, a chunk per reactor turn. Garbage collection: "
        f"time inside the collector (`gc.callbacks`). Medians of {RUNS} runs, each on a fresh "
        "copy of the store.",
        "",
        "| what | load s | of which gc | fire s | of which gc | total s | × floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    floor_total = backlog["floor"]["load"] + backlog["floor"]["fire"]
    for name, label in (("floor", "floor: raw query, decode, call, DELETE per chunk"),
                        ("evasync", "`load()`, then firing")):
        figures = backlog[name]
        total_s = figures["load"] + figures["fire"]
        lines.append(
            f"| {label} | {figures['load']:.3f} | {figures['load_gc']:.3f} "
            f"({figures['load_gc'] / figures['load']:.0%}) | {figures['fire']:.3f} "
            f"| {figures['fire_gc']:.3f} ({figures['fire_gc'] / figures['fire']:.0%}) "
            f"| {total_s:.3f} | {total_s / floor_total:.2f}x |")
    ours = backlog["evasync"]
    lines += [
        "",
        f"Measured and reported (the target): {ours['load'] + ours['fire']:.2f} s from a cold "
        f"start to an empty backlog; garbage collection took "
        f"{(ours['load_gc'] + ours['fire_gc']) / (ours['load'] + ours['fire']):.0%} of it "
        f"({ours['load_gc'] / ours['load']:.0%} of `load()`). Target, garbage collection kept "
        "out of the load path: "
        f"**{'met' if ours['load_gc_passes'] <= 1 else 'NOT met'}**: `load()` pauses the "
        "collector while it restores the rows, so the collector ran "
        f"{ours['load_gc_passes']:g} time(s) during it (median): the one pass over the tasks "
        "just made, when `load()` turns it back on (a new object is looked at once before it "
        f"counts as old); the floor's collector ran {backlog['floor']['load_gc_passes']:g} "
        "times.",
        "",
    ]
    return "\n".join(lines)


def _chunk() -> int:
    from evasync.tasks import OVERDUE_CHUNK

    return OVERDUE_CHUNK


def _reactor_name() -> str:
    command = [sys.executable, "-c",
               "from twisted.internet import reactor; print(type(reactor).__name__)"]
    return subprocess.run(command, check=True, text=True, stdout=subprocess.PIPE).stdout.strip()
