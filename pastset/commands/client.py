"""``pypsclient``: a client that runs the tasks a run's scheduler hands it."""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import replace

from pastset.commands import parser_for
from pastset.errors import PastSetError
from pastset.launch.batch import task_identity
from pastset.launch.worker import Worker
from pastset.proc import die_with_parent, watch_lifeline
from pastset.settings import Settings, Wiring, batch_environment, configure_logging
from pastset.transport import tls

__all__ = ["main"]

log = logging.getLogger("pastset.client")


def main(argv: list[str] | None = None) -> int:
    """Register with the run's scheduler and run tasks until told to stop."""
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings.load(run_helper=False)
    parser = parser_for("pypsclient", "Join a run as a client and run the tasks it is given.", settings)
    parser.add_argument("--run", default=None, help="the run to join (default PSRUN)")
    parser.add_argument("--ns", default=None, help="the run's name server HOST:PORT (default PSNS)")
    parser.add_argument(
        "--number", default=None, help="this client's number in its run (default: from srun/pbsdsh, else 0)"
    )
    parser.add_argument("--lifeline", action="store_true", help="stop when standard input closes (set by pypsrun)")
    parser.add_argument(
        "--ns-on-stdin",
        action="store_true",
        help="read the name server HOST:PORT as the first line of standard input (pypsrun starts "
        "clients while the server is still starting)",
    )
    options = parser.parse_args(argv)
    identity = task_identity(batch_environment())
    if options.number is None:
        options.number = identity.get("number", "0")
    configure_logging(settings, f"pypsclient[{options.number}]")
    wiring = Wiring.of(settings)
    wiring = replace(wiring, run=options.run or wiring.run, ns=options.ns or wiring.ns)
    if options.lifeline:
        die_with_parent()
    if options.ns_on_stdin:
        address = _first_line(0)
        if not address:  # the run ended (or failed to start) before its server was up
            return 0
        wiring = replace(wiring, ns=address)
    try:
        tls.check_client()
        worker = Worker(settings, wiring, {"number": options.number, **identity})
    except PastSetError as err:
        sys.stderr.write(f"pypsclient: {err}\n")
        return 1

    def stop(signum: int, frame: object) -> None:
        # Only unwind the main thread: ending the worker takes locks that the
        # interrupted code may hold, so that happens below, after unwinding.
        # Later signals (pypsrun, the lifeline and a lost scheduler may all send
        # one) are ignored so that they cannot interrupt it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if options.lifeline:
        watch_lifeline(lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        return worker.run()
    except SystemExit as exit_:
        worker.end()
        return int(exit_.code or 0)


def _first_line(fd: int) -> str:
    """One line read from ``fd`` byte by byte, so that nothing after it is taken from the lifeline."""
    data = bytearray()
    while not data.endswith(b"\n"):
        try:
            byte = os.read(fd, 1)
        except OSError:
            return ""
        if not byte:
            return ""
        data += byte
    return data.decode().strip()


if __name__ == "__main__":
    sys.exit(main())
