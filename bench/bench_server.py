"""Round-trip latency of the demo server under load: N telnet clients on loopback.

Run with ``make bench`` or ``.venv/bin/python -m bench server``; writes
``bench/results/server.md``.

For each N, a fresh server (``evasync start --foreground``, real time, a throw-away store) runs
in its own two processes. This process is the load generator, a single asyncio event loop: it
connects N clients, each makes an account, then every client sends a command every 100 ms for
20 s, the clients' sending times spread evenly over each 100 ms. Nineteen commands in twenty
are ``north``/``south``/``east``/``west`` (one reply line each); every twentieth is
``echo <token>``, which replies at once and schedules a ``delay`` whose answer comes ten seconds
later, so delays keep firing throughout. Round-trip latency is from writing a command to reading
its reply line. Afterwards the generator waits for every reply and every echo: a missing one is
a dropped line, an unexpected line or a lost connection an error.

The baseline, measured in the same run with the same generator, is a bare Twisted line server
(one process, no portal, no AMP hop, no commands) giving the same replies: the floor set by
loopback sockets, Python and the generator itself.
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
from typing import Any

from bench._machine import describe as describe_machine

ROOT = pathlib.Path(__file__).resolve().parent.parent

CLIENTS = (10, 100, 500)
PERIOD = 0.1          # seconds between two commands of one client
DURATION = 20.0       # seconds of load
ECHO_EVERY = 20       # every 20th command is an echo (a 10 s delay)
ECHO_DELAY = 10.0
TARGET_P99_MS = 20.0
DIRECTIONS = ("north", "south", "east", "west")

BASELINE_SERVER = r"""
import sys
from twisted.internet import reactor, protocol
from twisted.protocols.basic import LineReceiver

class Echo(LineReceiver):
    delimiter = b"\r\n"
    def connectionMade(self):
        self.sendLine(b"Welcome to the baseline")
    def lineReceived(self, line):
        word, _, rest = line.partition(b" ")
        if word == b"create":
            self.sendLine(b"Welcome, " + rest.split()[0] + b"!")
        elif word == b"echo":
            self.sendLine(b"You shout '" + rest + b"' into the valley and listen ...")
            reactor.callLater(10, self.sendLine, b"The valley answers: " + rest.upper())
        else:
            self.sendLine(b"You walk " + word + b" ... and back again: this world is one room.")

port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


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


class Stats:
    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.sent = 0
        self.replies = 0
        self.echoes_expected = 0
        self.echoes = 0
        self.errors: list[str] = []
        self.send_lag: list[float] = []


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
        self.measuring = False
        self.count = 0

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
                self.transport.write(f"create {self.name} benchpass\r\n".encode())
            elif line.startswith(b"Welcome, "):
                self.logged_in.set_result(None)
            return
        if line.startswith((b"You walk ", b"You shout ")):
            if not self.pending:
                self.stats.errors.append(f"{self.name}: reply to nothing: {line[:60]!r}")
                return
            sent = self.pending.popleft()
            self.stats.replies += 1
            if self.measuring:
                self.stats.rtts.append(now - sent)
        elif line.startswith(b"The valley answers: "):
            self.stats.echoes += 1
        elif line and not line.startswith((b"Type 'help'", b"Your character")):
            self.stats.errors.append(f"{self.name}: unexpected line {line[:80]!r}")

    def send_command(self, planned: float) -> None:
        now = self.loop.time()
        self.stats.send_lag.append(now - planned)
        self.count += 1
        if self.count % ECHO_EVERY == 0:
            line = f"echo {self.name}x{self.count}"
            self.stats.echoes_expected += 1
        else:
            line = DIRECTIONS[self.count % 4]
        self.pending.append(now)
        self.stats.sent += 1
        self.transport.write(line.encode() + b"\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stats_done:
            self.stats.errors.append(f"{self.name}: connection lost ({exc})")

    stats_done = False


async def _load(port: int, clients: int, pids: list[int]) -> tuple[Stats, float, list[float]]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    players: list[LoadClient] = []
    gate = asyncio.Semaphore(50)

    async def join(index: int) -> None:
        async with gate:
            _, client = await loop.create_connection(
                lambda: LoadClient(f"b{index}", stats, loop), "127.0.0.1", port)
            players.append(client)
            await asyncio.wait_for(client.logged_in, 60)

    await asyncio.gather(*(join(i) for i in range(clients)))
    await asyncio.sleep(1.0)  # let logins settle
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_before = [_cpu_seconds(pid) for pid in pids]
    start = loop.time() + 0.1
    ticks = int(DURATION / PERIOD)

    def tick(client: LoadClient, planned: float, left: int) -> None:
        client.send_command(planned)
        if left > 1:
            loop.call_at(planned + PERIOD, tick, client, planned + PERIOD, left - 1)

    for index, client in enumerate(players):
        client.measuring = True
        first = start + PERIOD * index / clients
        loop.call_at(first, tick, client, first, ticks)
    await asyncio.sleep(start + DURATION - loop.time() + PERIOD)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = [(_cpu_seconds(pid) - before) / DURATION
                  for pid, before in zip(pids, server_before)]
    generator_cpu = ((cpu_after.ru_utime + cpu_after.ru_stime)
                     - (cpu_before.ru_utime + cpu_before.ru_stime)) / DURATION
    # Wait for the last replies, then the last echoes (ten seconds after their command).
    deadline = loop.time() + ECHO_DELAY + 5
    while loop.time() < deadline and (stats.replies < stats.sent
                                      or stats.echoes < stats.echoes_expected):
        await asyncio.sleep(0.1)
    for client in players:
        client.stats_done = True
        client.transport.close()
    return stats, generator_cpu, server_cpu


# -- servers -------------------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_evasync(folder: str) -> tuple[subprocess.Popen, int, list[int]]:
    db = os.path.join(folder, "bench.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", "--port", "0",
         "--db", db, "--exempt-address", "127.0.0.1"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    statefile = os.path.join(folder, "bench.run", "state.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(statefile) as f:
                state = json.load(f)
            if state.get("ready"):
                return process, state["port"], [state["pid"], state["game_pid"]]
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


def _measure(kind: str, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="evasync-bench-") as folder:
        process, port, pids = (_start_evasync(folder) if kind == "evasync"
                               else _start_baseline())
        try:
            stats, generator_cpu, server_cpu = asyncio.run(_load(port, clients, pids))
        finally:
            process.terminate()
            process.wait(timeout=60)
    rtts = sorted(stats.rtts)
    lags = sorted(stats.send_lag)

    def quantile(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    dropped = (stats.sent - stats.replies) + (stats.echoes_expected - stats.echoes)
    return {
        "kind": kind, "clients": clients, "sent": stats.sent, "replies": stats.replies,
        "echoes": stats.echoes, "echoes_expected": stats.echoes_expected, "dropped": dropped,
        "errors": len(stats.errors), "error_samples": stats.errors[:5],
        "p50": quantile(rtts, 0.50), "p99": quantile(rtts, 0.99), "max": quantile(rtts, 1.0),
        "mean": statistics.fmean(rtts) * 1000 if rtts else 0.0,
        "send_lag_p99": quantile(lags, 0.99),
        "server_cpu": server_cpu,
        "generator_cpu": generator_cpu,
    }


def _cpu_text(row: dict[str, Any]) -> str:
    return " + ".join(f"{c * 100:.0f}%" for c in row["server_cpu"])


def main(results: pathlib.Path) -> None:
    rows = []
    for clients in CLIENTS:
        for kind in ("baseline", "evasync"):
            row = _measure(kind, clients)
            rows.append(row)
            print(f"   {kind:8} N={clients:4}: p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms, "
                  f"sent {row['sent']}, dropped {row['dropped']}, errors {row['errors']}",
                  flush=True)
            for sample in row["error_samples"]:
                print(f"      {sample}", flush=True)
    evasync_rows = [r for r in rows if r["kind"] == "evasync"]
    worst = max(r["p99"] for r in evasync_rows if r["clients"] == max(CLIENTS))
    clean = all(r["errors"] == 0 and r["dropped"] == 0 for r in evasync_rows)
    verdict = ("met" if worst <= TARGET_P99_MS and clean else "NOT met")
    lines = [
        "# Demo server: round-trip latency under load",
        "",
        "Produced by `.venv/bin/python -m bench server` (`bench/bench_server.py`), "
        f"on {time.strftime('%Y-%m-%d')}.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        f"N telnet clients on loopback, each sending a command every {PERIOD * 1000:.0f} ms for "
        f"{DURATION:.0f} s (sending times spread evenly); every {ECHO_EVERY}th command is "
        f"`echo`, whose answer is a `delay` of {ECHO_DELAY:.0f} s, so delays fire throughout. "
        "Latency: from writing a command to reading its reply line, in the load generator "
        "(one asyncio process). *evasync*: `evasync start --foreground` (portal + game "
        "process, AMP between them, real time). *baseline*: a bare Twisted line server in one "
        "process giving the same replies, measured by the same generator in the same run.",
        "",
        "| server | N | commands | p50 ms | p99 ms | max ms | echoes (delays fired) | dropped "
        "| errors | server CPU (portal + game) | generator CPU | generator send lag p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['clients']} | {r['sent']} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['max']:.1f} | {r['echoes']}/{r['echoes_expected']} | {r['dropped']} | "
            f"{r['errors']} | {_cpu_text(r)} | {r['generator_cpu'] * 100:.0f}% | "
            f"{r['send_lag_p99']:.2f} |")
    lines += [
        "",
        f"Target: p99 at most {TARGET_P99_MS:.0f} ms at {max(CLIENTS)} clients, no errors, no "
        f"dropped lines: **{verdict}** (p99 {worst:.2f} ms).",
        "",
        "CPU columns: CPU seconds used during the 20 s of load, divided by 20 s (100% = one "
        "core). *Generator send lag* is how late "
        "the generator wrote commands against their schedule: when it grows, the generator "
        "itself is short of CPU and the latencies include its own delay. Each row is one run: "
        "the tail (p99, max) moves from run to run with whatever else the machine is doing.",
        "",
    ]
    (results / "server.md").write_text("\n".join(lines))
