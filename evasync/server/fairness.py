"""Fair shares of the portal's time for the players' input, and one throttle per connection.

Bytes from a socket are not parsed when they arrive: they wait in their connection's
:class:`LineInput` until the portal's :class:`InputBudget` serves it. The budget parses at most
:data:`TURN` seconds of input per reactor turn for all connections together, :data:`SLICE` bytes
of one connection at a time, round-robin, so however much junk some clients send, the reactor is
back at the sockets within a few milliseconds and a quiet player's line waits behind one slice
of each busy connection at most. With nobody waiting, input is parsed at once (no added latency).

Per connection, :class:`LineInput` turns bytes into lines, at most :data:`RATE` lines a second
after a burst of :data:`BURST`, and at most :data:`BYTE_RATE` raw bytes a second after a burst of
:data:`BYTE_BURST`. Nothing is dropped: input beyond the rates waits, and once
:data:`HIGH_WATER` bytes wait, the socket is no longer read (the client's own TCP buffers fill
up). Its :class:`Throttle` is the one thing that pauses and resumes reading the socket.

Another kind of connection (a WebSocket session, say) joins the same budget in one of two ways:

* give it a :class:`LineInput` of its own, feed ``received()`` with what arrives (message text
  and a ``b"\\n"``, or raw bytes with a ``decode`` function for its framing), and take its lines
  from ``deliver``: rates, throttle and fairness come with it;
* or implement :class:`InputSource` (``serve(limit) -> bool``) and call ``budget.ready(source)``
  whenever it holds input it could handle now.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="evasync.server.fairness")

#: Seconds of parsing per reactor turn, for every connection together.
TURN = 0.003
#: Raw bytes of one connection parsed at a time.
SLICE = 2048
RATE = 20.0             # lines a second, sustained
BURST = 60              # lines at once (a paste)
BYTE_RATE = 32_768      # raw input bytes a second, sustained (telnet commands included)
BYTE_BURST = 262_144    # raw input bytes at once
HIGH_WATER = 65_536     # bytes waiting to be parsed before the socket is no longer read
MAX_LINE = 2000         # bytes in one input line


class InputSource(Protocol):
    """What :class:`InputBudget` serves: a connection holding input."""

    def serve(self, limit: int) -> bool:
        """Handle up to about ``limit`` bytes of waiting input; True if more could be handled
        now (the budget then comes back to it after the others)."""


class InputBudget:
    """Parses the waiting input of every connection, round-robin, in turns of bounded time.

    Args:
        clock: Schedules the next turn (at the end of the current reactor turn).
        turn: Seconds of parsing per turn, all connections together (overrun by one slice at
            most).
        slice: Bytes handed to a connection's ``serve`` at a time.
        timer: Measures the parsing time (``time.perf_counter``; tests pass their own).
    """

    def __init__(self, clock: IReactorTime, turn: float = TURN, slice: int = SLICE,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.turn = turn
        self.slice = slice
        self._timer = timer
        self._waiting: deque[InputSource] = deque()
        self._queued: set[int] = set()
        self._spent = 0.0
        self._serving = False
        self._call: Any = None

    def ready(self, source: InputSource) -> None:
        """``source`` holds input it can handle now: serve it at once if nobody waits and this
        turn has time left, else after those waiting."""
        if id(source) in self._queued:
            return
        if self._waiting or self._serving or self._spent >= self.turn:
            self._enqueue(source)
        else:
            self._serve(source)

    def _enqueue(self, source: InputSource) -> None:
        self._queued.add(id(source))
        self._waiting.append(source)
        if self._call is None:
            self._call = self._clock.callLater(0, self._next_turn)

    def _serve(self, source: InputSource) -> None:
        self._serving = True
        started = self._timer()
        try:
            more = source.serve(self.slice)
        finally:
            self._spent += self._timer() - started
            self._serving = False
        if more:
            self._enqueue(source)

    def _next_turn(self) -> None:
        self._call = None
        self._spent = 0.0
        waiting = self._waiting
        while waiting and self._spent < self.turn:
            source = waiting.popleft()
            self._queued.discard(id(source))
            self._serve(source)
        if waiting and self._call is None:
            self._call = self._clock.callLater(0, self._next_turn)

    @property
    def waiting(self) -> int:
        """How many connections wait for their turn."""
        return len(self._waiting)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    #: Rounding slack: 0.9999999999999998 tokens are one (else the wait for the rest rounds to
    #: no time at all, and the caller would spin).
    _SLACK = 1e-9

    def __init__(self, clock: IReactorTime, rate: float, burst: float) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self._stamp = clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        if now > self._stamp:
            self.tokens = min(self.burst, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if there are that many."""
        self._refill()
        if self.tokens + self._SLACK >= amount:
            self.tokens -= amount
            return True
        return False

    def charge(self, amount: float) -> None:
        """Take ``amount`` tokens, going into debt if need be."""
        self._refill()
        self.tokens -= amount

    def wait(self, amount: float = 1.0) -> float:
        """Seconds until there are ``amount`` tokens."""
        self._refill()
        return max(0.0, (amount - self._SLACK - self.tokens) / self.rate)


class Throttle:
    """The one owner of pausing and resuming a socket's reading.

    Reading stops when the first reason to hold it appears and resumes only when no reason
    is left, whichever part of the connection gave them.
    """

    def __init__(self, producer: IPushProducer) -> None:
        self._producer = producer
        self._reasons: set[str] = set()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def hold(self, reason: str) -> None:
        if reason not in self._reasons:
            if not self._reasons:
                self._producer.pauseProducing()
            self._reasons.add(reason)

    def release(self, reason: str) -> None:
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons:
                self._producer.resumeProducing()


class LineInput:
    """One connection's input on its way to the game: bytes in, lines out, in fair shares.

    Args:
        budget: The portal's :class:`InputBudget`.
        clock: For the rates.
        producer: What reads the socket (its transport): paused while input piles up.
        deliver: Called with each line (bytes, without its newline, at most
            :data:`MAX_LINE` bytes).
        notify: Called with a message for the player (a line was cut; input is slowed).
        decode: Turns raw bytes into text bytes, with ``\\n`` ending lines (and may act on
            what it finds, as telnet negotiation does); None if they are text already.
        owner: Names the connection in the log.
        slice: Raw bytes decoded at a time at most, if fewer than the budget's slice: for a
            ``decode`` that costs more per byte (so that one slice stays short).
    """

    def __init__(self, budget: InputBudget, clock: IReactorTime, producer: IPushProducer,
                 deliver: Callable[[bytes], None], notify: Callable[[str], None],
                 decode: Callable[[bytes], bytes] | None = None, owner: Any = None,
                 slice: int | None = None) -> None:
        self._owner = owner
        self._slice = slice
        self._budget = budget
        self._clock = clock
        self._deliver = deliver
        self._notify = notify
        self._decode = decode
        self.throttle = Throttle(producer)
        self._raw = bytearray()      # received, not parsed yet
        self._text = bytearray()     # parsed, not split into lines yet
        self._discarding = False     # the rest of a cut line is being skipped
        self._lines = TokenBucket(clock, RATE, BURST)
        self._bytes = TokenBucket(clock, BYTE_RATE, BYTE_BURST)
        self._line_wait: Any = None
        self._byte_wait: Any = None
        self._told = False
        self.closed = False

    @property
    def pending(self) -> int:
        """Bytes received and not yet made into lines."""
        return len(self._raw) + len(self._text)

    def received(self, data: bytes) -> None:
        """Bytes from the socket (parsed later, in the connection's turn)."""
        if self.closed:
            return
        self._raw += data
        self.charge(len(data))
        if len(self._raw) >= HIGH_WATER:
            self.throttle.hold("backlog")
        if self._line_wait is None:
            self._budget.ready(self)

    def charge(self, amount: int) -> None:
        """Count ``amount`` bytes against the byte rate: those received, and what parsing some
        input costs beyond its size (``decode`` may charge it, per WebSocket frame, say)."""
        self._bytes.charge(amount)
        if self._bytes.tokens < 0 and self._byte_wait is None:
            self.throttle.hold("bytes")
            self._byte_wait = self._clock.callLater(self._bytes.wait(0), self._bytes_refilled)

    def serve(self, limit: int) -> bool:
        if self.closed or not self._split():
            return False
        if self._raw:
            if self._slice is not None:
                limit = min(limit, self._slice)
            chunk = bytes(self._raw[:limit])
            del self._raw[:limit]
            self._text += self._decode(chunk) if self._decode is not None else chunk
            if not self._split():
                return False
        if len(self._raw) < HIGH_WATER:
            self.throttle.release("backlog")
        return bool(self._raw) and not self.closed

    def _split(self) -> bool:
        """Deliver the complete lines, as the line rate allows; False if it held one back."""
        text = self._text
        while not self.closed:
            end = text.find(b"\n")
            if self._discarding:
                if end == -1:
                    text.clear()
                    return True
                del text[:end + 1]
                self._discarding = False
                continue
            if end == -1 and len(text) <= MAX_LINE:
                return True
            if not self._lines.take():
                self._slow_down()
                return False
            if end != -1 and end <= MAX_LINE:
                line = bytes(text[:end])
                del text[:end + 1]
            else:
                line = bytes(text[:MAX_LINE])
                if end == -1:
                    text.clear()
                    self._discarding = True
                else:
                    del text[:end + 1]
                self._notify(f"Your line was too long: only its first {MAX_LINE} bytes were "
                             "used.")
            self._deliver(line)
        return False

    def _slow_down(self) -> None:
        self._line_wait = self._clock.callLater(self._lines.wait(), self._lines_refilled)
        if not self._told:
            self._told = True
            log.info("{owner}: input slowed down", owner=self._owner)
            self._notify(f"You are typing faster than {RATE:.0f} lines a second: your input is "
                         "slowed down.")

    def _lines_refilled(self) -> None:
        self._line_wait = None
        if not self.closed:
            self._budget.ready(self)

    def _bytes_refilled(self) -> None:
        self._byte_wait = None
        if self.closed:
            return
        if self._bytes.tokens < 0 and self._bytes.wait(0) > 0:
            self._byte_wait = self._clock.callLater(self._bytes.wait(0), self._bytes_refilled)
        else:
            self.throttle.release("bytes")

    def close(self) -> None:
        """The connection is gone: forget its input."""
        self.closed = True
        self._raw.clear()
        self._text.clear()
        for call in (self._line_wait, self._byte_wait):
            if call is not None and call.active():
                call.cancel()
        self._line_wait = self._byte_wait = None
