"""What the portal and the game process say to each other, over AMP on a unix socket.

The game process connects to the portal and introduces itself with :class:`Hello`; the answer
is the table of open connections to take over, so a new game process (after a reload or a crash)
picks up every player where the old one left them. After that, traffic is two streams of events,
batched per reactor turn into as few boxes as fit (:class:`Outbox`; the portal's, at most one
every :data:`SPACING` seconds):

* portal to game (:class:`ToGame`): ``["connect", sid, address]``, ``["input", sid, line]``,
  ``["disconnect", sid]``;
* game to portal (:class:`ToPortal`): ``["send", sid, text]``, ``["login", sid, character_id,
  name]``, ``["close", sid]``.

Each event is encoded on its own as it is queued, so a text that cannot be encoded (a lone
surrogate, say, from a file name that is not UTF-8) costs nobody else their messages: its bad
characters are sent escaped (``\\udcff``) and the log says so.

The portal stops a game process with :class:`Shutdown`; the game asks for a reload with
:class:`Reload`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp

log = Logger(namespace="evasync.server.protocol")


#: Exit status of a game process that cannot use the store: restarting it cannot help.
EXIT_BAD_STORE = 78

class JSON(amp.Argument):
    """An AMP argument holding any JSON value (UTF-8, at most 64 KiB once encoded)."""

    def toString(self, inObject: Any) -> bytes:
        return json.dumps(inObject, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def fromString(self, inString: bytes) -> Any:
        return json.loads(inString)


class Events(amp.Argument):
    """An AMP argument holding a list of events, sent as a JSON array of events that
    :class:`Outbox` encoded one by one (received as a list)."""

    def toString(self, inObject: list[bytes]) -> bytes:
        return b"[" + b",".join(inObject) + b"]"

    def fromString(self, inString: bytes) -> Any:
        return json.loads(inString)


class ToGame(amp.Command):
    """Portal to game: what happened on the players' connections, in order."""

    arguments = [(b"events", Events())]
    requiresAnswer = False


class ToPortal(amp.Command):
    """Game to portal: text for the players, logins and connections to close, in order."""

    arguments = [(b"events", Events())]
    requiresAnswer = False


class Hello(amp.Command):
    """Game to portal, once connected. Answers the open connections and what to tell them.

    ``sessions`` is a list of ``{"sid", "address", "character_id", "greeted"}``; ``notice`` is
    the text to show everyone once the game is ready ("" after a plain start).
    """

    arguments = [(b"pid", amp.Integer())]
    response = [(b"sessions", JSON()), (b"notice", amp.Unicode())]


class Reload(amp.Command):
    """Game to portal: restart the game process (the portal answers at once)."""

    arguments: list = []
    response: list = []


class Shutdown(amp.Command):
    """Portal to game: stop everything gracefully and exit; answered once the store is closed."""

    arguments = [(b"reason", amp.Unicode())]
    response: list = []


#: Characters of text per event: JSON-encoded (at most 7 bytes a character, for an escaped
#: lone surrogate) that stays under :data:`BOX_BYTES`.
BOX_CHARS = 8_000
#: Bytes of encoded events per AMP box (AMP's limit on one value is 65,535).
BOX_BYTES = 60_000
#: Least seconds between two boxes of the portal's events: under load (thousands of commands a
#: second) the input of a couple of milliseconds travels in one box, one write and one wake-up
#: of the game process instead of one per line; a link that was quiet that long sends at the end
#: of the reactor turn, as without it. The game needs none: it answers a box's lines in one box
#: at the end of the turn that handled them.
SPACING = 0.002

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _escaped(item: Any) -> Any:
    return item.encode("utf-8", "backslashreplace").decode("utf-8") \
        if isinstance(item, str) else item


class Outbox:
    """Events queued during one reactor turn, sent as few AMP boxes as fit.

    Args:
        clock: Schedules the flush.
        command: The AMP command carrying the events (:class:`ToGame` or :class:`ToPortal`).
        link: Returns the connected AMP protocol, or None (the events are then dropped).
        spacing: Least seconds between two sends: events queued sooner after the last send
            wait for the rest of it, and go together (0: every reactor turn may send).
    """

    def __init__(self, clock: IReactorTime, command: type[amp.Command],
                 link: Callable[[], amp.AMP | None], spacing: float = 0.0) -> None:
        self._clock = clock
        self._spacing = spacing
        self._sent_at = -spacing
        self._command = command
        self._link = link
        self._events: list[bytes] = []
        self._size = 0
        self._call: Any = None

    def put(self, *event: Any) -> None:
        """Queue one event; a long text (the last item) is split over several events.

        The pieces of a split ``send`` but the last are ``sendpart`` events, which the portal
        writes without ending the line, so the player sees one message, not broken lines.
        """
        text = event[-1]
        if isinstance(text, str) and len(text) > BOX_CHARS:
            kind, middle = event[0], list(event[1:-1])
            starts = range(0, len(text), BOX_CHARS)
            for start in starts:
                last = start == starts[-1]
                part = kind if last or kind != "send" else "sendpart"
                self.put(part, *middle, text[start:start + BOX_CHARS])
            return
        try:
            encoded = _encode(event).encode("utf-8")
        except UnicodeEncodeError as exc:
            log.warn("a {kind!r} event for {sid!r} holds text that is not valid Unicode "
                     "({why}); sent with its bad characters escaped", kind=event[0],
                     sid=event[1] if len(event) > 1 else None, why=str(exc))
            encoded = _encode([_escaped(item) for item in event]).encode("utf-8")
        if self._size + len(encoded) + 1 > BOX_BYTES:
            self.flush()
        self._events.append(encoded)
        self._size += len(encoded) + 1
        if self._call is None:
            # Never longer than the spacing, even if the wall clock was set back meanwhile.
            wait = min(self._sent_at + self._spacing - self._clock.seconds(), self._spacing)
            self._call = self._clock.callLater(wait if wait > 0 else 0, self.flush)

    def flush(self) -> None:
        """Send what is queued now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        events, self._events, self._size = self._events, [], 0
        link = self._link()
        if events and link is not None:
            if self._spacing:
                self._sent_at = self._clock.seconds()
            link.callRemote(self._command, events=events)

    def clear(self) -> None:
        """Forget what is queued (the other side is gone)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._events, self._size = [], 0
