"""``pypsserver`` and ``pypsscheduler``: the server side of PastSet.

``pypsserver`` hosts named tuple spaces (opened on demand by name) behind a Pyro5
name server; ``pypsscheduler`` also runs a scheduler, so that ``spawn`` and
``halt`` work and clients (``pypsclient``) can register.  ``pypsrun`` starts the
latter for its run with ``--ready``: print the address once listening, and stop
when standard input closes.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
import threading

from Pyro5 import config as pyro_config

from pastset.commands import parser_for
from pastset.errors import ConfigurationError, PastSetError
from pastset.proc import die_with_parent, watch_lifeline
from pastset.server.host import Server
from pastset.server.web import start_web
from pastset.settings import Settings, configure_logging
from pastset.transport import tls

__all__ = ["main", "scheduler_main"]

log = logging.getLogger("pastset.server.host")


def _raise_file_limit() -> None:
    # One socket per client connection: 1000 clients need more than the usual 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
        except (ValueError, OSError):  # pragma: no cover
            pass


def main(argv: list[str] | None = None, prog: str = "pypsserver", scheduler: bool = False) -> int:
    """Serve PastSet spaces until interrupted (or, with --ready, until stdin closes)."""
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.load(run_helper=False)
    parser = parser_for(prog, (__doc__ or "").split("\n\n")[1], settings)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; use this host's address for clients elsewhere)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"name server port (default PYRO_NS_PORT, now {pyro_config.NS_PORT}; 0: any free port)",
    )
    parser.add_argument("--run", action="append", default=[], help="host this run's space from the start")
    parser.add_argument("--scheduler", action="store_true", default=scheduler, help="also run a scheduler")
    parser.add_argument("--ready", action="store_true", help=argparse_suppress())
    options = parser.parse_args(argv)
    configure_logging(settings, prog)
    if options.ready:
        die_with_parent()
    _raise_file_limit()
    threading.stack_size(1 << 20)
    port = pyro_config.NS_PORT if options.port is None else options.port
    try:
        tls.check_server()
    except ConfigurationError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return 1
    try:
        server = Server(settings, options.host, port, on_demand=not options.run)
    except ConfigurationError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        return 1
    except OSError as err:
        fixed = f" or on channel port {settings.PSCHANNEL}" if settings.PSCHANNEL.isdigit() else ""
        sys.stderr.write(
            f"{prog}: cannot listen on {options.host}:{port}{fixed}: {err.strerror}; "
            "choose another --port (or PYRO_NS_PORT)" + (" or PSCHANNEL" if fixed else "") + "\n"
        )
        return 1
    try:
        for run in options.run:
            server.open(run, scheduler=options.scheduler)
    except PastSetError as err:  # a damaged journal, a bad X-function directory: nothing is served
        sys.stderr.write(f"{prog}: {err}\n")
        server.stop()
        server.close(0)
        return 1
    web = start_web(server, settings.PSWEB, settings.PSSECRET) if settings.PSWEB else None

    def stop(signum: int, frame: object) -> None:
        server.request_stop()  # stopping takes locks the interrupted main thread may hold: serve() does it

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if options.ready:
        sys.stdout.write(f"READY {server.address}\n")
        sys.stdout.flush()
        watch_lifeline(server.stop)
    else:
        log.warning("serving at %s: programs connect with PSNS=%s PSRUN=NAME", server.address, server.address)
    try:
        server.serve()
    finally:
        if web is not None:
            web.close()
    server.close()
    return 0


def argparse_suppress() -> str:
    """Help text that hides an option meant for pypsrun only."""
    import argparse

    return argparse.SUPPRESS


def scheduler_main(argv: list[str] | None = None) -> int:
    """``pypsscheduler``: the server side with a scheduler."""
    return main(argv, prog="pypsscheduler", scheduler=True)


if __name__ == "__main__":
    sys.exit(main())
