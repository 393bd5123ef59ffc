"""What the portal and the game process say to each other, over AMP on a unix socket.

The game process connects to the portal and introduces itself with :class:`Hello`; the answer
is the table of open connections to take over, so a new game process (after a reload or a crash)
picks up every player where the old one left them. After that, traffic is two streams of events,
batched per reactor turn into as few boxes as fit (:class:`Outbox`):

* portal to game (:class:`ToGame`): ``["connect", sid, address]``, ``["input", sid, line]``,
  ``["disconnect", sid]``;
* game to portal (:class:`ToPortal`): ``["send", sid, text]``, ``["login", sid, character_id,
  name]``, ``["close", sid]``.

The portal stops a game process with :class:`Shutdown`; the game asks for a reload with
:class:`Reload`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp


#: Exit status of a game process that cannot use the store: restarting it cannot help.
EXIT_BAD_STORE = 78

class JSON(amp.Argument):
    """An AMP argument holding any JSON value (UTF-8, at most 64 KiB once encoded)."""

    def toString(self, inObject: Any) -> bytes:
        return json.dumps(inObject, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def fromString(self, inString: bytes) -> Any:
        return json.loads(inString)


class ToGame(amp.Command):
    """Portal to game: what happened on the players' connections, in order."""

    arguments = [(b"events", JSON())]
    requiresAnswer = False


class ToPortal(amp.Command):
    """Game to portal: text for the players, logins and connections to close, in order."""

    arguments = [(b"events", JSON())]
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


#: Characters of text per AMP box: JSON-encoded (at most 6 bytes a character, for an escaped
#: control character) that stays under AMP's 64 KiB limit on one value.
BOX_CHARS = 10_000


class Outbox:
    """Events queued during one reactor turn, sent as few AMP boxes as fit.

    Args:
        clock: Schedules the flush (at the end of the current reactor turn).
        command: The AMP command carrying the events (:class:`ToGame` or :class:`ToPortal`).
        link: Returns the connected AMP protocol, or None (the events are then dropped).
    """

    def __init__(self, clock: IReactorTime, command: type[amp.Command],
                 link: Callable[[], amp.AMP | None]) -> None:
        self._clock = clock
        self._command = command
        self._link = link
        self._events: list[list] = []
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
        cost = 16 + sum(len(item) for item in event if isinstance(item, str))
        if self._size + cost > BOX_CHARS:
            self.flush()
        self._events.append(list(event))
        self._size += cost
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        """Send what is queued now."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        events, self._events, self._size = self._events, [], 0
        link = self._link()
        if events and link is not None:
            link.callRemote(self._command, events=events)

    def clear(self) -> None:
        """Forget what is queued (the other side is gone)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._events, self._size = [], 0
