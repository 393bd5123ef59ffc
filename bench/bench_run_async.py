"""run_async: how late the reactor serves everyone else while one CPU-heavy call runs.

A probe due every 10 ms on the reactor stands for the other players: how late it fires is how
long a command arriving at that moment would wait. We measure it with no call running (the
baseline), then while a pure-Python call of about 2 s runs in each executor, one after the other
in the same run. The measuring runs in a subprocess of its own, because a process can run the
Twisted reactor only once.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench._machine import describe as describe_machine, load, load_note

ROOT = pathlib.Path(__file__).resolve().parent.parent
PERIOD = 0.010  # seconds between probes
TARGET_SECONDS = 2.0  # how long the CPU-heavy call should take
MODES = ("reactor", "thread", "process")
PROCESS_P99_TARGET_MS = 5.0


def burn(iterations: int) -> int:
    """CPU-heavy pure Python: holds the GIL the whole time it runs in this process."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total


def _calibrate() -> int:
    """How many iterations of :func:`burn` take about TARGET_SECONDS here."""
    iterations = 100_000
    while True:
        started = time.perf_counter()
        burn(iterations)
        took = time.perf_counter() - started
        if took > 0.2:
            return int(iterations * TARGET_SECONDS / took)
        iterations *= 2


class _Probe:
    """Due every PERIOD from its start; records (seconds since start, lateness) at each firing.

    Due times are absolute, so after the reactor was blocked the overdue probes all fire, each
    with the wait it saw, as commands queued meanwhile would.
    """

    def __init__(self, clock) -> None:
        self.clock = clock
        self.samples: list[tuple[float, float]] = []
        self.start = clock.seconds()
        self.stop_after: float | None = None
        self.done = None
        self._schedule(1)

    def _schedule(self, index: int) -> None:
        due = self.start + index * PERIOD
        self.clock.callLater(max(0.0, due - self.clock.seconds()), self._fire, index, due)

    def _fire(self, index: int, due: float) -> None:
        now = self.clock.seconds()
        self.samples.append((due - self.start, now - due))
        if self.stop_after is not None and due >= self.stop_after:
            self.done.callback(self.samples)
            return
        self._schedule(index + 1)

    def finish(self):
        """Stop once every probe due until now has fired; returns a Deferred of the samples."""
        from twisted.internet import defer

        self.stop_after = self.clock.seconds()
        self.done = defer.Deferred()
        return self.done


def measure(out: str) -> None:
    """Run the baseline and each mode on the real reactor; write the samples to ``out`` (JSON)."""
    from twisted.internet import defer, task

    from evasync import Runtime, run_async, set_runtime

    workdir = tempfile.mkdtemp(prefix="evasync-bench-")
    runtime = Runtime(db_path=os.path.join(workdir, "evasync.db"))
    set_runtime(runtime)
    reactor = runtime.reactor
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    iterations = _calibrate()
    report: dict = {"iterations": iterations, "load": loadavg, "runs": {}}

    @defer.inlineCallbacks
    def run():
        try:
            started = time.perf_counter()
            first = run_async(burn, 10, executor="process")
            report["process_first_call_ms"] = (time.perf_counter() - started) * 1000
            yield first
            yield run_async(burn, 10, executor="thread")
            yield task.deferLater(reactor, 0.2, lambda: None)

            probe = _Probe(reactor)
            yield task.deferLater(reactor, TARGET_SECONDS, lambda: None)
            report["runs"]["baseline"] = {"seconds": None, "samples": (yield probe.finish())}
            for mode in MODES:
                yield task.deferLater(reactor, 0.2, lambda: None)
                probe = _Probe(reactor)
                started = time.perf_counter()
                yield run_async(burn, iterations, executor=mode)
                took = time.perf_counter() - started
                report["runs"][mode] = {"seconds": took, "samples": (yield probe.finish())}
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    runtime.close()
    shutil.rmtree(workdir, ignore_errors=True)
    pathlib.Path(out).write_text(json.dumps(report))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))  # nearest rank, ceil
    return ordered[min(rank, len(ordered)) - 1]


def _plot(report: dict, png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"baseline": "#888888", "reactor": "#d62728", "thread": "#ff7f0e",
               "process": "#2ca02c"}
    labels = {"baseline": "no call running", "reactor": 'executor="reactor"',
              "thread": 'executor="thread"', "process": 'executor="process"'}
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    for name, run in report["runs"].items():
        xs = [t for t, _ in run["samples"]]
        ys = [max(late * 1000, 0.01) for _, late in run["samples"]]
        ax.plot(xs, ys, marker=".", markersize=3, linewidth=1, color=colours[name],
                label=labels[name])
    ax.axhline(PROCESS_P99_TARGET_MS, color="black", linestyle="--", linewidth=0.8)
    ax.text(0.99, PROCESS_P99_TARGET_MS * 0.85,
            f"{PROCESS_P99_TARGET_MS:g} ms: the target for process p99",
            transform=ax.get_yaxis_transform(), fontsize=9, ha="right", va="top")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the CPU-heavy call started (probe due time)")
    ax.set_ylabel("how late the probe fired (ms, log scale)")
    ax.set_title("Other players' wait while one ~2 s pure-Python call runs, by executor")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def _markdown(reports: list[dict], machine: str, load_before: str, load_after: str) -> str:
    rows = []
    verdict = ""
    for name in reports[0]["runs"]:
        figures = {"p50": [], "p99": [], "max": [], "took": [], "probes": []}
        for report in reports:
            run = report["runs"][name]
            late = [late * 1000 for _, late in run["samples"]]
            figures["p50"].append(_percentile(late, 0.50))
            figures["p99"].append(_percentile(late, 0.99))
            figures["max"].append(max(late))
            figures["probes"].append(len(late))
            if run["seconds"] is not None:
                figures["took"].append(run["seconds"])
        p50, p99, worst = (statistics.median(figures[k]) for k in ("p50", "p99", "max"))
        took = f"{statistics.median(figures['took']):.2f} s" if figures["took"] else "–"
        label = "none (the floor)" if name == "baseline" else f'`"{name}"`'
        rows.append(f"| {label} | {took} | {statistics.median(figures['probes']):.0f} "
                    f"| {p50:.2f} | {p99:.2f} ({min(figures['p99']):.2f}–{max(figures['p99']):.2f})"
                    f" | {worst:.2f} |")
        if name == "process":
            met = "met" if p99 <= PROCESS_P99_TARGET_MS else "NOT met"
            verdict = (f"Target, process p99 lateness at most {PROCESS_P99_TARGET_MS:g} ms: "
                       f"**{met}** ({p99:.2f} ms, median of {len(reports)} runs).")
    today = datetime.date.today().isoformat()
    first_call = statistics.median(r["process_first_call_ms"] for r in reports)
    iterations = statistics.median(r["iterations"] for r in reports)
    return "\n".join([
        "# run_async: other players' wait while one CPU-heavy call runs",
        "",
        f"Produced on {today} by `.venv/bin/python -m bench run_async` (also part of "
        "`make bench`), from `bench/bench_run_async.py`.",
        "",
        f"Machine: {machine}.",
        "",
        load_note(load_before, load_after),
        "",
        f"A pure-Python loop calibrated to about {TARGET_SECONDS:g} s on this machine "
        f"(median {iterations:,.0f} iterations) runs through `run_async` with each executor in "
        f"turn. Meanwhile a probe due every {PERIOD * 1000:g} ms on the real reactor "
        "records how late it fires (its lateness read on the reactor's clock, `time.time`): the "
        "wait of a command arriving at that moment. Due times are fixed in advance, so after "
        "the reactor was blocked every overdue probe still fires, with the wait it saw. The "
        "floor measures the same probe with nothing running. The thread and process pools "
        "were started before measuring (their first use is a one-off cost: the first process "
        f"call held the reactor for {first_call:.1f} ms, median, while the pool started).",
        "",
        f"Each figure is the median of {len(reports)} runs, each run a fresh process measuring "
        "every row in turn; the p99 column gives the runs' range in brackets.",
        "",
        "| executor | call took | probes | p50 lateness (ms) | p99 lateness (ms) | "
        "max lateness (ms) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        verdict,
        "",
        "- `\"reactor\"`: the call runs in the reactor thread, so nobody is served until it "
        "ends; commands that arrived meanwhile wait up to the whole call.",
        "- `\"thread\"`: I/O would no longer block, but CPU-bound Python holds the GIL, which "
        "the reactor gets back only at the interpreter's switch interval (5 ms by default).",
        "- `\"process\"`: the call runs in another process with its own GIL; the reactor "
        "stays as prompt as with nothing running.",
        "- The saw-tooth below about 1 ms, there with nothing running too, is the reactor's "
        "poll timeout, which has millisecond resolution.",
        "",
        "![lateness over time per executor, first run](run_async.png)",
        "",
    ])


RUNS = 3


def main(results: pathlib.Path) -> None:
    """Measure in RUNS fresh processes, then write ``run_async.md`` and ``run_async.png``."""
    load_before = load()
    reports = []
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as tmp:
        for i in range(RUNS):
            print(f"   run {i + 1} of {RUNS}", flush=True)
            out = os.path.join(tmp, f"run_async-{i}.json")
            subprocess.run([sys.executable, "-c",
                            f"from bench.bench_run_async import measure; measure({out!r})"],
                           cwd=ROOT, check=True, timeout=300)
            reports.append(json.loads(pathlib.Path(out).read_text()))
    png = results / "run_async.png"
    _plot(reports[0], png)
    static = ROOT / "docs" / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(png, static / "run_async_lateness.png")
    markdown = _markdown(reports, describe_machine(), load_before, load())
    (results / "run_async.md").write_text(markdown)
    print(markdown)
