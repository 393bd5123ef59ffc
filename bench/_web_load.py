"""The demo server's web client under the load ``bench_server`` puts on telnet.

:func:`measure` starts its own server (``evasync start --foreground``, real time, a throw-away
store, the web client on a free port) and plays N browser-protocol clients against it with
``bench_server``'s generator: the same commands at the same pace, the same windows, runs and
busy core, so its rows go into the same table, measured in the same ``make bench`` run as the
telnet figures. Each client opens the WebSocket the page opens (``/ws``), from its own loopback
address (127.2.x.y), as players do from their own machines, and sends each command as a text
frame; a reply is the first line of a ``{"text": ...}`` message.

The client is a few lines of framing, not a library: it masks with a zero key (legal, and the
server cannot tell), so the generator's cost stays close to the telnet generator's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import bench_server as telnet


def _source(index: int) -> str:
    return f"127.2.{index // 250}.{index % 250 + 1}"


class WebLoadClient(telnet.LoadClient):
    """One simulated page: the telnet load client's commands and replies, over a WebSocket."""

    def __init__(self, name: str, stats: telnet.Stats, loop: asyncio.AbstractEventLoop,
                 host: str) -> None:
        super().__init__(name, stats, loop)
        self.host = host
        self.upgraded = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n".encode())

    def write_line(self, line: str) -> None:
        payload = line.encode()
        assert len(payload) < 126
        self.transport.write(bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        buffer = self.buffer + data
        if not self.upgraded:
            head, found, rest = buffer.partition(b"\r\n\r\n")
            if not found:
                self.buffer = buffer
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.stats.errors.append(f"{self.name}: handshake {head[:40]!r}")
                self.transport.close()
                return
            self.upgraded, buffer = True, rest
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
                text = json.loads(buffer[start:start + size]).get("text")
                for line in (text or "").splitlines():
                    self.line(line.encode(), now)
            elif opcode == 0x8:
                self.stats.errors.append(f"{self.name}: closed by the server")
            pos = start + size
        self.buffer = buffer[pos:]


async def _load(port: int, clients: int, pids: list[int]) -> tuple[telnet.Stats, dict]:
    loop = asyncio.get_running_loop()
    stats = telnet.Stats()
    players: list[WebLoadClient] = []
    gate = asyncio.Semaphore(50)

    async def join(index: int) -> None:
        async with gate:
            _, client = await loop.create_connection(
                lambda: WebLoadClient(f"w{index}", stats, loop, f"127.0.0.1:{port}"),
                "127.0.0.1", port, local_addr=(_source(index), 0))
            players.append(client)
            await asyncio.wait_for(client.logged_in, 120)

    await asyncio.gather(*(join(i) for i in range(clients)))
    await asyncio.sleep(1.0)  # let logins settle
    series = {"quiet": await telnet._series(players, stats, pids, telnet.RUNS)}
    hog = subprocess.Popen([sys.executable, "-c", telnet.BUSY_LOOP])
    try:
        await asyncio.sleep(1.0)
        series["busy"] = await telnet._series(players, stats, pids, telnet.RUNS)
    finally:
        hog.kill()
        hog.wait()
    for client in players:
        client.closing = True
        client.transport.close()
    return stats, series


def _start(folder: str) -> tuple[subprocess.Popen, int, list[int]]:
    db = os.path.join(folder, "bench.db")
    process = subprocess.Popen(
        [sys.executable, "-m", "evasync", "start", "--foreground", "--quiet", "--port", "0",
         "--db", db], cwd=telnet.ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
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


def measure(clients: int) -> list[dict[str, Any]]:
    """``clients`` pages, quiet and with a busy core: rows for ``bench_server``'s table."""
    with tempfile.TemporaryDirectory(prefix="evasync-bench-web-") as folder:
        process, port, pids = _start(folder)
        try:
            stats, series = asyncio.run(_load(port, clients, pids))
        finally:
            process.terminate()
            process.wait(timeout=60)
    dropped = (stats.sent - stats.replies) + (stats.orders_expected - stats.dishes)
    return [{"kind": "evasync (WebSocket)", "clients": clients, "condition": condition,
             **telnet._summary(windows), "dishes": stats.dishes,
             "orders_expected": stats.orders_expected, "dropped": dropped,
             "errors": len(stats.errors), "error_samples": stats.errors[:5]}
            for condition, windows in series.items()]


if __name__ == "__main__":
    for row in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 50):
        print(row)
