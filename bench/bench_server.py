"""The demo server under load: round-trip latency and CPU per command, N telnet clients on loopback.

Run with ``make bench`` or ``.venv/bin/python -m bench server``; writes
``bench/results/server.md``.

For each N a fresh server runs in its own processes: *evasync* (``evasync start --foreground``,
real time, a throw-away store: a portal process and a game process) or the *baseline*, a bare
Twisted line server in one process giving the same replies (no portal, no AMP hop, no commands).
This process is the load generator, a single asyncio event loop: it connects N clients, each
makes an account, then every client sends a command every 100 ms, the clients' sending times
spread evenly over each 100 ms. Nineteen commands in twenty are ``north``/``south``/``east``/
``west`` (one reply line each); every twentieth is ``order <token>``, which replies at once and
schedules a ``delay`` whose answer comes ten seconds later, so delays are pending and firing.
Round-trip latency is from writing a command to reading its reply line; afterwards every reply
and every dish must have come: a missing one is a dropped line, an unexpected line or a lost
connection an error.

The load runs as back-to-back windows of ``WINDOW`` seconds on the same connections; each
window is one run (its own latencies and CPU), and the table gives the median of ``RUNS`` runs.
At the largest N the same connections then carry ``RUNS`` more windows while a busy loop (a
separate ``while True: pass`` process) holds one core. Orders stop ten seconds before each
series ends so that every dish is served within it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Any, Awaitable, Callable

from bench._machine import describe as describe_machine, load, load_note

ROOT = pathlib.Path(__file__).resolve().parent.parent

CLIENTS = (100, 500)
PERIOD = 0.1          # seconds between two commands of one client
WINDOW = 10.0         # seconds of one run
RUNS = 3
ORDER_EVERY = 20       # every 20th command is an order (a 10 s delay)
COOKING_TIME = 10.0
TARGET_P99_MS = 20.0
TARGET_CPU_RATIO = 4.0
DIRECTIONS = ("north", "south", "east", "west")

BASELINE_SERVER = r"""
import sys
from twisted.internet import reactor, protocol
from twisted.protocols.basic import LineReceiver

class Bare(LineReceiver):
    delimiter = b"\r\n"
    def connectionMade(self):
        self.sendLine(b"Welcome to the baseline")
    def lineReceived(self, line):
        word, _, rest = line.partition(b" ")
        if word == b"create":
            self.sendLine(b"Welcome, " + rest.split()[0] + b"!")
        elif word == b"order":
            self.sendLine(b"You order " + rest + b". The cook disappears into the kitchen.")
            dish = b"The cook brings your " + rest + b", steaming hot."
            reactor.callLater(10, self.sendLine, dish)
        else:
            self.sendLine(b"You walk " + word + b" ... and back again: this world is one room.")

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Bare), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""

BUSY_LOOP = "while True: pass"


# -- the load generator --------------------------------------------------------------------------

def _strip_telnet(data: bytes) -> bytes:
    """Drop telnet commands (the server's option offers) from received bytes."""
    if b"\xff" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte != 0xFF:
            out.append(byte)
            i += 1
        elif i + 1 < len(data) and data[i + 1] in (0xFB, 0xFC, 0xFD, 0xFE):
            i += 3
        elif i + 1 < len(data) and data[i + 1] == 0xFA:
            end = data.find(b"\xff\xf0", i)
            i = len(data) if end == -1 else end + 2
        else:
            i += 2
    return bytes(out)


class Window:
    """What one run saw: the round trips of the commands sent in it, and the CPU used."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.rtts: list[float] = []
        self.send_lag: list[float] = []
        self.sent = 0
        self.server_cpu: list[float] = []
        self.generator_cpu = 0.0


class Stats:
    def __init__(self) -> None:
        self.windows: list[Window] = []
        self.sent = 0
        self.replies = 0
        self.orders_expected = 0
        self.dishes = 0
        self.errors: list[str] = []
        self.order_until = 0.0

    def window_at(self, when: float) -> Window | None:
        for window in reversed(self.windows):
            if when >= window.start:
                return window if when < window.start + WINDOW else None
        return None


class LoadClient(asyncio.Protocol):
    """One simulated player: logs in, then answers are matched to commands in order."""

    def __init__(self, name: str, stats: Stats, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.stats = stats
        self.loop = loop
        self.buffer = b""
        self.pending: deque[float] = deque()
        self.logged_in = loop.create_future()
        self.transport: Any = None
        self.count = 0
        self.closing = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.buffer += _strip_telnet(data)
        *lines, self.buffer = self.buffer.split(b"\r\n")
        for line in lines:
            self.line(line, now)

    def line(self, line: bytes, now: float) -> None:
        if not self.logged_in.done():
            if line.startswith(b"Welcome to the"):
                self.write_line(f"create {self.name} benchpass")
            elif line.startswith(b"Welcome, "):
                self.logged_in.set_result(None)
            return
        if line.startswith((b"You walk ", b"You order ")):
            if not self.pending:
                self.stats.errors.append(f"{self.name}: reply to nothing: {line[:60]!r}")
                return
            sent = self.pending.popleft()
            self.stats.replies += 1
            window = self.stats.window_at(sent)
            if window is not None:
                window.rtts.append(now - sent)
        elif line.startswith(b"The cook brings your "):
            self.stats.dishes += 1
        elif line and not line.startswith((b"Type 'help'", b"Your character")):
            self.stats.errors.append(f"{self.name}: unexpected line {line[:80]!r}")

    def send_command(self, planned: float) -> None:
        now = self.loop.time()
        window = self.stats.window_at(planned)
        if window is not None:
            window.send_lag.append(now - planned)
            window.sent += 1
        self.count += 1
        if self.count % ORDER_EVERY == 0 and planned < self.stats.order_until:
            line = f"order {self.name}x{self.count}"
            self.stats.orders_expected += 1
        else:
            line = DIRECTIONS[self.count % 4]
        self.pending.append(now)
        self.stats.sent += 1
        self.write_line(line)

    def write_line(self, line: str) -> None:
        self.transport.write(line.encode() + b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.stats.errors.append(f"{self.name}: connection lost ({exc})")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _series(players: list[LoadClient], stats: Stats, pids: list[int],
                  runs: int) -> list[Window]:
    """``runs`` back-to-back windows of load on ``players``; returns them measured."""
    loop = asyncio.get_running_loop()
    clients = len(players)
    start = loop.time() + 0.2
    total = runs * WINDOW
    stats.order_until = start + total - COOKING_TIME
    windows = [Window(start + i * WINDOW) for i in range(runs)]
    stats.windows.extend(windows)
    ticks = int(round(total / PERIOD))

    def tick(client: LoadClient, planned: float, left: int) -> None:
        client.send_command(planned)
        if left > 1:
            loop.call_at(planned + PERIOD, tick, client, planned + PERIOD, left - 1)

    for index, client in enumerate(players):
        first = start + PERIOD * index / clients
        loop.call_at(first, tick, client, first, ticks)
    for window in windows:  # CPU read at each window's edges
        await asyncio.sleep(max(0.0, window.start - loop.time()))
        server_before = [_cpu_seconds(pid) for pid in pids]
        own_before = _own_cpu()
        await asyncio.sleep(max(0.0, window.start + WINDOW - loop.time()))
        window.server_cpu = [_cpu_seconds(pid) - before
                             for pid, before in zip(pids, server_before)]
        window.generator_cpu = _own_cpu() - own_before
    # The last replies, and the dishes (none was ordered in the last ten seconds).
    deadline = loop.time() + 15
    while loop.time() < deadline and (stats.replies < stats.sent
                                      or stats.dishes < stats.orders_expected):
        await asyncio.sleep(0.05)
    return windows


async def _load(connect: Callable[[int, Stats], Awaitable[LoadClient]], clients: int,
                pids: list[int], busy: bool) -> tuple[Stats, dict]:
    """Join ``clients`` players made by ``connect(index, stats)`` (a connected, logging-in
    client), run the series (quiet, then with a busy core if ``busy``), then close them."""
    stats = Stats()
    players: list[LoadClient] = []
    gate = asyncio.Semaphore(50)

    async def join(index: int) -> None:
        async with gate:
            client = await connect(index, stats)
            players.append(client)
            await asyncio.wait_for(client.logged_in, 120)

    await asyncio.gather(*(join(i) for i in range(clients)))
    await asyncio.sleep(1.0)  # let logins settle
    series = {"quiet": await _series(players, stats, pids, RUNS)}
    if busy:
        hog = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            await asyncio.sleep(1.0)
            series["busy"] = await _series(players, stats, pids, RUNS)
        finally:
            hog.kill()
            hog.wait()
    for client in players:
        client.closing = True
        client.transport.close()
    return stats, series


def _telnet_connect(port: int) -> Callable[[int, Stats], Awaitable[LoadClient]]:
    async def connect(index: int, stats: Stats) -> LoadClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: LoadClient(f"b{index}", stats, loop), "127.0.0.1", port)
        return client
    return connect


# -- servers -------------------------------------------------------------------------------------

def _start_evasync(folder: str, *options: str, web: bool = False
                   ) -> tuple[subprocess.Popen, int, list[int]]:
    """``evasync start`` with ``options`` on a throw-away store in ``folder``, once ready:
    (process, its telnet port or with ``web`` its web port, [portal pid, game pid])."""
    db = os.path.join(folder, "bench.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", "--port", "0",
         "--db", db, *options],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    statefile = os.path.join(folder, "bench.run", "state.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(statefile) as f:
                state = json.load(f)
            if state.get("ready"):
                port = (int(state["web"].rstrip("/").rsplit(":", 1)[1]) if web
                        else state["port"])
                return process, port, [state["pid"], state["game_pid"]]
        except (OSError, ValueError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the evasync server did not start")


def _start_baseline() -> tuple[subprocess.Popen, int, list[int]]:
    process = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER], stdout=subprocess.PIPE,
                               text=True)
    port = int(process.stdout.readline())
    return process, port, [process.pid]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _summary(windows: list[Window]) -> dict[str, Any]:
    """Median over the runs (windows) of each figure, and the spread of p99."""
    def median(values: list[float]) -> float:
        return statistics.median(values)

    p99s = [_quantile(w.rtts, 0.99) for w in windows]
    return {
        "runs": len(windows),
        "commands": median([w.sent for w in windows]),
        "p50": median([_quantile(w.rtts, 0.50) for w in windows]),
        "p99": median(p99s), "p99_low": min(p99s), "p99_high": max(p99s),
        "max": max(_quantile(w.rtts, 1.0) for w in windows),
        "server_cpu": [median([w.server_cpu[i] / WINDOW for w in windows])
                       for i in range(len(windows[0].server_cpu))],
        "cpu_per_command_us": median([sum(w.server_cpu) / max(w.sent, 1) * 1e6
                                      for w in windows]),
        "generator_cpu": median([w.generator_cpu / WINDOW for w in windows]),
        "send_lag_p99": median([_quantile(w.send_lag, 0.99) for w in windows]),
    }


def _measure(kind: str, clients: int) -> list[dict[str, Any]]:
    busy = clients == max(CLIENTS)
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as folder:
        process, port, pids = (
            _start_evasync(folder, "--exempt-address", "127.0.0.1")  # the clients share one
            if kind == "evasync" else _start_baseline())
        try:
            stats, series = asyncio.run(_load(_telnet_connect(port), clients, pids, busy))
        finally:
            process.terminate()
            process.wait(timeout=60)
    return rows(kind, clients, stats, series)


def rows(kind: str, clients: int, stats: Stats, series: dict[str, list[Window]]
         ) -> list[dict[str, Any]]:
    """The table's rows of one load: a row per condition (quiet, busy)."""
    dropped = (stats.sent - stats.replies) + (stats.orders_expected - stats.dishes)
    return [{"kind": kind, "clients": clients, "condition": condition, **_summary(windows),
             "dishes": stats.dishes, "orders_expected": stats.orders_expected,
             "dropped": dropped, "errors": len(stats.errors), "error_samples": stats.errors[:5]}
            for condition, windows in series.items()]


def main(results: pathlib.Path) -> None:
    load_before = load()
    rows = []
    for clients in CLIENTS:
        for kind in ("baseline", "evasync"):
            started = time.perf_counter()
            for row in _measure(kind, clients):
                rows.append(row)
                print(f"   {kind:8} N={clients:4} {row['condition']:5}: p50 {row['p50']:.2f} ms, "
                      f"p99 {row['p99']:.2f} ms, CPU {row['cpu_per_command_us']:.0f} µs/command, "
                      f"dropped {row['dropped']}, errors {row['errors']} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
                for sample in row["error_samples"]:
                    print(f"      {sample}", flush=True)
    from bench import _web_load  # imports this module: not at the top

    for row in _web_load.measure(max(CLIENTS)):
        rows.append(row)
        print(f"   WebSocket N={row['clients']:4} {row['condition']:5}: p50 {row['p50']:.2f} ms, "
              f"p99 {row['p99']:.2f} ms, CPU {row['cpu_per_command_us']:.0f} µs/command, "
              f"dropped {row['dropped']}, errors {row['errors']}", flush=True)
    text = _report(rows, load_before, load())
    (results / "server.md").write_text(text)
    print(text)


def _report(rows: list[dict], load_before: str, load_after: str) -> str:
    def find(kind: str, clients: int, condition: str = "quiet") -> dict:
        return next(r for r in rows if (r["kind"], r["clients"], r["condition"])
                    == (kind, clients, condition))

    top = max(CLIENTS)
    lines = [
        "# Demo server: latency and CPU per command under load",
        "",
        "Produced by `.venv/bin/python -m bench server` (`bench/bench_server.py`, also part of "
        f"`make bench`) on {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        load_note(load_before, load_after),
        "",
        f"N telnet clients on loopback, each sending a command every {PERIOD * 1000:.0f} ms "
        "(sending times spread evenly); every "
        f"{ORDER_EVERY}th command is `order`, whose dish is a `delay` of {COOKING_TIME:.0f} s. "
        "Latency: from writing a command to reading its reply line, measured in the load "
        "generator (one asyncio process) with its event loop's clock (`time.monotonic`). "
        "*evasync*: `evasync start --foreground` (portal + game process, AMP between them, real "
        "time). *baseline* (the floor): a bare Twisted line server in one process giving the "
        "same replies, measured by the same generator in the same `make bench` run. "
        "*evasync (WebSocket)*: the same server and load from browser-protocol clients on the "
        "web client's WebSocket, each from its own loopback address (`bench/_web_load.py`).",
        "",
        f"Each row is the median of {RUNS} runs: back-to-back {WINDOW:.0f} s windows of the same "
        "load on the same connections, each with its own latencies and CPU. *busy*: "
        f"{RUNS} more windows at N={top} while a separate `while True: pass` process holds one "
        "of the cores. Server CPU: user + system seconds of the server's processes "
        "(`/proc/<pid>/stat`) during a window, divided by its length (100% = one core); per "
        "command: divided by the commands sent in it.",
        "",
        "| server | N | load | commands/run | p50 ms | p99 ms (runs' range) | max ms "
        "| server CPU (portal + game) | CPU µs per command | × floor | generator CPU "
        "| send lag p99 ms | dishes | dropped | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        floor = find("baseline", r["clients"], r["condition"])
        ratio = r["cpu_per_command_us"] / floor["cpu_per_command_us"]
        cpu = " + ".join(f"{c * 100:.0f}%" for c in r["server_cpu"])
        lines.append(
            f"| {r['kind']} | {r['clients']} | {r['condition']} | {r['commands']:,.0f} "
            f"| {r['p50']:.2f} | {r['p99']:.2f} ({r['p99_low']:.2f}–{r['p99_high']:.2f}) "
            f"| {r['max']:.1f} | {cpu} | {r['cpu_per_command_us']:.0f} | {ratio:.1f}x "
            f"| {r['generator_cpu'] * 100:.0f}% | {r['send_lag_p99']:.2f} "
            f"| {r['dishes']}/{r['orders_expected']} | {r['dropped']} | {r['errors']} |")
    quiet, busy = find("evasync", top), find("evasync", top, "busy")
    ratio = quiet["cpu_per_command_us"] / find("baseline", top)["cpu_per_command_us"]
    clean = all(r["errors"] == 0 and r["dropped"] == 0 for r in rows if r["kind"] == "evasync")
    lines += [
        "",
        f"Target, server CPU per command at most {TARGET_CPU_RATIO:g}x the floor's at N={top} "
        f"(portal + game against the bare server, same load, same run): "
        f"**{'met' if ratio <= TARGET_CPU_RATIO else 'NOT met'}** ({ratio:.1f}x: "
        f"{quiet['cpu_per_command_us']:.0f} µs against "
        f"{find('baseline', top)['cpu_per_command_us']:.0f} µs).",
        "",
        f"Target, p99 at most {TARGET_P99_MS:g} ms at N={top} while a busy loop holds a core, no "
        f"errors, no dropped lines: **{'met' if busy['p99'] <= TARGET_P99_MS and clean else 'NOT met'}"
        f"** (p99 {busy['p99']:.2f} ms, median of {RUNS} runs; quiet: {quiet['p99']:.2f} ms).",
        "",
        "*Generator send lag* is how late the generator wrote commands against their schedule: "
        "when it grows, the generator itself is short of CPU and the latencies include its own "
        "delay. The tail (p99, max) moves from run to run with whatever else the machine is "
        "doing; the range shows how far it moved between the runs of a row.",
        "",
    ]
    return "\n".join(lines)
