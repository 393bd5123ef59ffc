"""Logging of both processes: twisted.logger events as text lines.

The portal owns the log file: it writes its own events there (and on the console when attached
to one) and relays the lines the game process prints on its standard output and error, so the
log reads as one story even across reloads and crashes.
"""

from __future__ import annotations

from typing import IO, Any, Iterable

from twisted.logger import (FileLogObserver, ILogObserver, LogLevel, Logger,
                            LogLevelFilterPredicate, FilteringLogObserver, eventAsText,
                            globalLogBeginner)

#: Key of an event that carries a line already formatted elsewhere (relayed from the game).
RELAYED = "evasync_line"


def _format(event: dict[str, Any]) -> str:
    line = event.get(RELAYED)
    if line is not None:
        return line + "\n"
    return eventAsText(event, includeSystem=True) + "\n"


def start_logging(files: Iterable[IO[str]], level: LogLevel = LogLevel.info) -> None:
    """Send every log event at ``level`` or above to each of ``files``, one line per event."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    observers: list[ILogObserver] = [
        FilteringLogObserver(FileLogObserver(f, _format), [predicate]) for f in files]
    globalLogBeginner.beginLoggingTo(observers, redirectStandardIO=False)


def relay(log: Logger, line: str, level: LogLevel = LogLevel.info) -> None:
    """Log a line another process formatted, as it is."""
    log.emit(level, "{evasync_line}", evasync_line=line)
