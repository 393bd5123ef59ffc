"""The ``evasync`` command: start, stop, reload and status of the demo server."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="evasync", description="Run the evasync demo server (telnet and a web client, several players).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--db", help="the store file (default: $EVASYNC_DB or ./evasync.db); "
                                      "the pid, state and log files go next to it")
        return sub

    start = command("start", "start the server (in the background unless --foreground)")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1)")
    start.add_argument("--port", type=int, default=4000, help="telnet port (default 4000; "
                       "0 picks a free one, shown by 'evasync status')")
    start.add_argument("--web-host", metavar="HOST", help="address the web client listens on "
                       "(default: the same as --host)")
    start.add_argument("--web-port", type=int, metavar="PORT",
                       help="the web client's port: open http://HOST:PORT/ in a browser to play "
                            "(default: the telnet port plus one, 4001; a free one, shown by "
                            "'evasync status', if either is 0)")
    start.add_argument("--no-web", action="store_true", help="serve no web client")
    start.add_argument("--foreground", action="store_true",
                       help="stay attached to the terminal, logging to it too (Ctrl-C stops)")
    start.add_argument("--speed", type=float, default=1.0,
                       help="game time runs this many times faster (demos and tests; use a "
                            "throw-away store)")
    start.add_argument("--exempt-address", action="append", default=[], metavar="ADDRESS",
                       help="an address the per-address limits (connections, accounts made, "
                            "failed logins) do not apply to, e.g. 127.0.0.1 for a load test; "
                            "repeatable")
    start.add_argument("--max-connections", type=int, default=None, metavar="N",
                       help="players connected at once, from all addresses, telnet and web "
                            "together (default: 1000); one more is told the server is full")
    start.add_argument("--typeclass", metavar="MODULE:CLASS",
                       help="the typeclass of new characters, for your own game (default: the "
                            "demo's); its package must be installed or in the current folder")
    start.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    command("stop", "stop the server gracefully (persistent delays stay stored)")
    command("reload", "restart the game with the code on disk; players stay connected")
    command("status", "say whether the server runs (exit status 0) or not (3)")
    options = parser.parse_args(argv)

    from .server import control

    if options.command == "start":
        if not options.speed > 0:
            parser.error(f"--speed must be > 0, not {options.speed}")
        if options.max_connections is not None and not options.max_connections >= 1:
            parser.error(f"--max-connections must be at least 1, not {options.max_connections}")
        if options.typeclass:
            from .server.accounts import check_typeclass

            # The game process runs as `python -m ...` in this folder, so it imports from here.
            sys.path.insert(0, os.getcwd())
            problem = check_typeclass(options.typeclass)
            if problem:
                parser.error(problem)
        web_port = options.web_port
        if web_port is None:
            web_port = options.port + 1 if options.port else 0
        if not options.no_web and not 0 <= web_port <= 65535:
            parser.error(f"the web client's port must be 0 to 65535, not {web_port} "
                         "(give --web-port, or --no-web)")
        web = None if options.no_web else (options.web_host or options.host, web_port)
        return control.start(options.host, options.port, options.db, options.foreground,
                             options.speed, console=not options.quiet,
                             exempt=options.exempt_address, typeclass=options.typeclass,
                             web=web, max_connections=options.max_connections)
    return getattr(control, options.command)(options.db)


if __name__ == "__main__":
    sys.exit(main())
