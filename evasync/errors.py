"""The exceptions evasync raises on purpose. All derive from :class:`EvasyncError`."""


class EvasyncError(Exception):
    """Base class of every exception evasync raises deliberately."""


class NotPersistableError(EvasyncError, TypeError, ValueError):
    """A persistent task (or a ``db`` attribute) was given something the store cannot hold.

    Raised at ``delay(..., persistent=True)`` time, before anything is stored, so nothing is
    dropped later. The message names the offending callback or argument and what to do instead.
    """


class StoreError(EvasyncError):
    """The store (:class:`evasync.store.Store`) failed. The message names the file and says why.

    Raised when:

    * the store is opened, at its first use, and the file is not an SQLite database, is damaged,
      is another program's SQLite database, has a newer schema than this evasync knows, is a
      directory, or cannot be created, read or written. The file is left untouched: evasync
      never writes to a file it could not read.
    * its lock cannot be taken: another process holds the store (the message names it), or the
      lock file beside it cannot be opened, is a symbolic link or is not a plain file of this
      user.
    * SQLite fails while the store is read or written (a full disk, a damaged page, a file
      locked by another program). The message says what was being done, SQLite's error is the
      ``__cause__``, and the failed write changed nothing.
    * a store closed by a reload or close of its runtime is used again.

    Other errors are not wrapped: ``Store(path, synchronous="SOMETIMES")`` is a ValueError.
    """


class ObjectDeletedError(EvasyncError):
    """An operation was attempted on a game object that has been deleted."""


class NotPicklableError(EvasyncError, TypeError):
    """``run_async(..., executor="process")`` was given something a worker process cannot receive.

    Raised at call time, before anything is sent: the message names the function or the
    argument that could not be pickled and why. Pass a module-level function and plain data, or
    run the work in a thread (``executor="thread"``).
    """
