"""The demo server's web client under load: N WebSocket clients, as ``bench_server`` runs telnet.

:func:`measure` starts its own server (``evasync start --foreground``, real time, a throw-away
store, the web client on a free port) and plays N browser-protocol clients against it from one
asyncio event loop: each opens the WebSocket the page opens (``/ws``), makes an account, then
sends a command every ``period`` seconds, the clients' sending times spread evenly. Nineteen
commands in twenty are ``north``/``south``/``east``/``west``; every twentieth is ``echo``, whose
answer comes ten seconds later from a ``delay``. Latency is from writing a command's frame to
reading its reply message. Every client connects from its own loopback address (127.2.x.y), as
players do from their own machines. The result is a row with the keys of ``bench_server``'s
rows, so it goes into the same table, measured in the same run as the telnet figures.

The client is a few lines of framing, not a library: it masks with a zero key (legal, and the
server cannot tell), so the generator's cost stays close to the telnet generator's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIRECTIONS = ("north", "south", "east", "west")
ECHO_EVERY = 20
ECHO_DELAY = 10.0


def _source(index: int) -> str:
    return f"127.2.{index // 250}.{index % 250 + 1}"


def _text_frame(text: str) -> bytes:
    payload = text.encode("utf-8")
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class _Stats:
    def __init__(self) -> None:
        self.rtts: list[float] = []
        self.sent = self.replies = self.echoes = self.echoes_expected = 0
        self.errors: list[str] = []
        self.send_lag: list[float] = []


class _WebClient(asyncio.Protocol):
    """One simulated page: handshake, account, then replies matched to commands in order."""

    def __init__(self, name: str, host: str, stats: _Stats,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.host = host
        self.stats = stats
        self.loop = loop
        self.buffer = b""
        self.upgraded = False
        self.pending: deque[float] = deque()
        self.logged_in = loop.create_future()
        self.transport: Any = None
        self.measuring = False
        self.count = 0
        self.done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.buffer += data
        if not self.upgraded:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.stats.errors.append(f"{self.name}: handshake {head[:40]!r}")
                self.transport.close()
                return
            self.upgraded, self.buffer = True, rest
        buffer = self.buffer
        pos = 0
        while len(buffer) - pos >= 2:
            opcode, size, start = buffer[pos] & 0x0F, buffer[pos + 1] & 0x7F, pos + 2
            if size == 126:
                if len(buffer) - pos < 4:
                    break
                size, start = struct.unpack_from("!H", buffer, pos + 2)[0], pos + 4
            elif size == 127:
                if len(buffer) - pos < 10:
                    break
                size, start = struct.unpack_from("!Q", buffer, pos + 2)[0], pos + 10
            if len(buffer) < start + size:
                break
            if opcode == 0x1:
                self.message(buffer[start:start + size], now)
            elif opcode == 0x8:
                self.stats.errors.append(f"{self.name}: closed by the server")
            pos = start + size
        self.buffer = buffer[pos:]

    def message(self, payload: bytes, now: float) -> None:
        text = json.loads(payload).get("text")
        if text is None:
            return
        for line in text.splitlines():
            self.line(line, now)

    def line(self, line: str, now: float) -> None:
        if not self.logged_in.done():
            if line.startswith("Welcome to the"):
                self.transport.write(_text_frame(f"create {self.name} benchpass"))
            elif line.startswith("Welcome, "):
                self.logged_in.set_result(None)
            return
        if line.startswith(("You walk ", "You shout ")):
            if not self.pending:
                self.stats.errors.append(f"{self.name}: reply to nothing: {line[:60]!r}")
                return
            sent = self.pending.popleft()
            self.stats.replies += 1
            if self.measuring:
                self.stats.rtts.append(now - sent)
        elif line.startswith("The valley answers: "):
            self.stats.echoes += 1
        elif line and not line.startswith(("Type 'help'", "Your character")):
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
        self.transport.write(_text_frame(line))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.stats.errors.append(f"{self.name}: connection lost ({exc})")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(port: int, clients: int, pids: list[int], period: float,
                duration: float) -> tuple[_Stats, float, list[float]]:
    loop = asyncio.get_running_loop()
    stats = _Stats()
    players: list[_WebClient] = []
    gate = asyncio.Semaphore(50)

    async def join(index: int) -> None:
        async with gate:
            _, client = await loop.create_connection(
                lambda: _WebClient(f"w{index}", f"127.0.0.1:{port}", stats, loop),
                "127.0.0.1", port, local_addr=(_source(index), 0))
            players.append(client)
            await asyncio.wait_for(client.logged_in, 120)

    await asyncio.gather(*(join(i) for i in range(clients)))
    await asyncio.sleep(1.0)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    server_before = [_cpu_seconds(pid) for pid in pids]
    start = loop.time() + 0.1
    ticks = int(duration / period)

    def tick(client: _WebClient, planned: float, left: int) -> None:
        client.send_command(planned)
        if left > 1:
            loop.call_at(planned + period, tick, client, planned + period, left - 1)

    for index, client in enumerate(players):
        client.measuring = True
        first = start + period * index / clients
        loop.call_at(first, tick, client, first, ticks)
    await asyncio.sleep(start + duration - loop.time() + period)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = [(_cpu_seconds(pid) - before) / duration
                  for pid, before in zip(pids, server_before)]
    generator_cpu = ((cpu_after.ru_utime + cpu_after.ru_stime)
                     - (cpu_before.ru_utime + cpu_before.ru_stime)) / duration
    deadline = loop.time() + ECHO_DELAY + 5
    while loop.time() < deadline and (stats.replies < stats.sent
                                      or stats.echoes < stats.echoes_expected):
        await asyncio.sleep(0.1)
    for client in players:
        client.done = True
        client.transport.close()
    return stats, generator_cpu, server_cpu


def _start(folder: str) -> tuple[subprocess.Popen, int, list[int]]:
    db = os.path.join(folder, "bench.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", "--port", "0",
         "--db", db], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    statefile = os.path.join(folder, "bench.run", "state.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(statefile) as f:
                state = json.load(f)
            if state.get("ready"):
                port = int(state["web"].rstrip("/").rsplit(":", 1)[1])
                return process, port, [state["pid"], state["game_pid"]]
        except (OSError, ValueError):
            pass
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the evasync server did not start")


def measure(clients: int, period: float = 0.1, duration: float = 20.0) -> dict[str, Any]:
    """One run of ``clients`` WebSocket clients; a row for ``bench_server``'s table."""
    with tempfile.TemporaryDirectory(prefix="evasync-bench-web-") as folder:
        process, port, pids = _start(folder)
        try:
            stats, generator_cpu, server_cpu = asyncio.run(
                _load(port, clients, pids, period, duration))
        finally:
            process.terminate()
            process.wait(timeout=60)
    rtts = sorted(stats.rtts)
    lags = sorted(stats.send_lag)

    def quantile(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    return {
        "kind": "evasync (WebSocket)", "clients": clients, "sent": stats.sent,
        "replies": stats.replies, "echoes": stats.echoes,
        "echoes_expected": stats.echoes_expected,
        "dropped": (stats.sent - stats.replies) + (stats.echoes_expected - stats.echoes),
        "errors": len(stats.errors), "error_samples": stats.errors[:5],
        "p50": quantile(rtts, 0.50), "p99": quantile(rtts, 0.99), "max": quantile(rtts, 1.0),
        "mean": statistics.fmean(rtts) * 1000 if rtts else 0.0,
        "send_lag_p99": quantile(lags, 0.99),
        "server_cpu": server_cpu, "generator_cpu": generator_cpu,
    }


if __name__ == "__main__":
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 50,
                  duration=float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))
