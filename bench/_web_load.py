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
import sys
import tempfile
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


def _connect(port: int):
    async def connect(index: int, stats: telnet.Stats) -> WebLoadClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: WebLoadClient(f"w{index}", stats, loop, f"127.0.0.1:{port}"),
            "127.0.0.1", port, local_addr=(_source(index), 0))
        return client
    return connect


def measure(clients: int) -> list[dict[str, Any]]:
    """``clients`` pages, quiet and with a busy core: rows for ``bench_server``'s table."""
    with tempfile.TemporaryDirectory(prefix="evasync-bench-web-") as folder:
        process, port, pids = telnet._start_evasync(folder, web=True)
        try:
            stats, series = asyncio.run(telnet._load(_connect(port), clients, pids, busy=True))
        finally:
            process.terminate()
            process.wait(timeout=60)
    return telnet.rows("evasync (WebSocket)", clients, stats, series)


if __name__ == "__main__":
    for row in measure(int(sys.argv[1]) if len(sys.argv) > 1 else 50):
        print(row)
