"""Helpers for the web client's tests: a WebSocket client on a blocking socket, a browser, and
the module fixtures ``server`` and ``admin`` (a test module imports them to share one server).

:class:`WebSocketClient` speaks the protocol of ``evasync/server/web.py`` frame by frame, so a
test can also send what no browser would (binary frames, huge frames, floods). :func:`browser`
starts Debian's headless Chromium through its chromedriver (``.ci/run`` installs both).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from ._server_support import PASSWORD, TIMEOUT, Server, TextClient

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """A demo server, web client included, shared by the tests of one module."""
    server = Server(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def admin(server):
    """A telnet player on ``server``, the superuser (the first account made)."""
    client = server.client("Admin", PASSWORD)
    yield client
    client.close()


def frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    """One client frame (masked, as clients must); ``length`` may claim another length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class WebSocketClient(TextClient):
    """A connection to the web client's WebSocket: ``send`` lines, ``expect`` text.

    Everything the server shows (``{"text": ...}`` messages) is kept in ``text``; ``expect``
    searches from the end of its previous match. The other messages are kept in ``messages``;
    a close frame from the server sets ``close_code`` and ``close_reason``.
    """

    def __init__(self, url: str, origin: str | None = None, source: str | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection(
            (parts.hostname, parts.port), timeout=TIMEOUT,
            source_address=(source, 0) if source else None)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n")
        if origin is not None:
            request += f"Origin: {origin}\r\n"
        self.sock.sendall(request.encode() + b"\r\n")
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                break
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.text = ""
        self.pos = 0
        self.messages: list[dict] = []
        self.closed = self.status != 101
        self.close_code: int | None = None
        self.close_reason = ""
        self._parse()  # frames that came with the handshake's answer

    # -- sending ---------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, line: str) -> None:
        self.send_raw(frame(TEXT, line.encode("utf-8")))

    # -- receiving -------------------------------------------------------------------------

    def _frames(self) -> Iterator[tuple[int, bytes]]:
        while len(self._buffer) >= 2:
            first, second = self._buffer[0], self._buffer[1]
            size, start = second & 0x7F, 2
            if size == 126:
                if len(self._buffer) < 4:
                    return
                size, start = struct.unpack("!H", self._buffer[2:4])[0], 4
            elif size == 127:
                if len(self._buffer) < 10:
                    return
                size, start = struct.unpack("!Q", self._buffer[2:10])[0], 10
            if len(self._buffer) < start + size:
                return
            payload = self._buffer[start:start + size]
            self._buffer = self._buffer[start + size:]
            yield first & 0x0F, payload

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self._buffer += data
        self._parse()

    def _parse(self) -> None:
        for opcode, payload in self._frames():
            if opcode == TEXT:
                message = json.loads(payload)
                if "text" in message:
                    self.text += message["text"]
                else:
                    self.messages.append(message)
            elif opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self.closed = True
            elif opcode == PING:
                self.send_raw(frame(PONG, payload))

    def _closed_note(self) -> str:
        return f" (closed: {self.close_code} {self.close_reason!r})" if self.closed else ""

    def message(self, key: str, timeout: float = TIMEOUT) -> dict:
        """Wait for a message holding ``key`` (``game``, ``player``) and return the first."""
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self.messages):
                if key in message:
                    return self.messages.pop(index)
            if time.monotonic() > deadline or self.closed:
                raise AssertionError(f"no {key!r} message within {timeout} s: {self.messages}")
            self._read(0.2)

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"the connection stayed open for {timeout} s")
            self._read(0.2)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def browser(width: int = 1024, height: int = 768):
    """Debian's headless Chromium, through its chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (f"{missing} not found: install Debian's chromium and chromium-driver "
                         "(.ci/run does)")
    profile = tempfile.mkdtemp(prefix="evasync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--hide-scrollbars",
                 "--force-color-profile=srgb", f"--window-size={width},{height}",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
