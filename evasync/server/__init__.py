"""The demo server: several players, telnet, accounts, and a reload that keeps them connected.

Two processes (see ``docs`` and the modules):

* the **portal** (:mod:`.portal`, :mod:`.telnet`, :mod:`.web`, :mod:`.fairness`) holds the
  players' connections, telnet and the web client's WebSockets, parses their input in fair
  turns, and lives as long as the server;
* the **game process** (:mod:`.game`, :mod:`.commands`, :mod:`.accounts`, :mod:`.limits`) runs a
  :class:`~evasync.Runtime` on the real reactor with the store; it is replaced on every reload.

They talk AMP over a unix socket (:mod:`.protocol`). ``evasync start|stop|reload|status``
(:mod:`.control`) drives them from outside.
"""
