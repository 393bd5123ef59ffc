"""The exceptions evasync raises on purpose. All derive from :class:`EvasyncError`."""


class EvasyncError(Exception):
    """Base class of every exception evasync raises deliberately."""


class NotPersistableError(EvasyncError, TypeError, ValueError):
    """A persistent task (or a ``db`` attribute) was given something the store cannot hold.

    Raised at ``delay(..., persistent=True)`` time, before anything is stored, so nothing is
    dropped later. The message names the offending callback or argument and what to do instead.
    """


class StoreError(EvasyncError):
    """The SQLite store could not be opened or is not an evasync store.

    The message names the file. evasync never overwrites a file it could not read.
    """


class ObjectDeletedError(EvasyncError):
    """An operation was attempted on a game object that has been deleted."""


class NotPicklableError(EvasyncError, TypeError):
    """``run_async(..., executor="process")`` was given something a worker process cannot receive.

    Raised at call time, before anything is sent: the message names the function or the
    argument that could not be pickled and why. Pass a module-level function and plain data, or
    run the work in a thread (``executor="thread"``).
    """
