"""``pypsrun APP [ARGS...]``: start a whole run with one command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable

from pastset.commands import load_settings, parser_for
from pastset.errors import PastSetError
from pastset.launch.run import Run
from pastset.runs import forget_run, record_run, runs_dir
from pastset.settings import Settings, configure_logging
from pastset.transport import tls

__all__ = ["main"]

log = logging.getLogger("pastset.pypsrun")


def main(argv: list[str] | None = None) -> int:
    """Run APP with a PastSet server and PSPROCS clients; return APP's exit status."""
    argv = sys.argv[1:] if argv is None else argv
    settings = load_settings("pypsrun")
    if settings is None:
        return 2
    parser = parser_for(
        "pypsrun",
        "Start the PastSet server side and PSPROCS clients, run APP, and when APP exits shut "
        "everything down and exit with APP's status.",
        settings,
    )
    parser.add_argument("app", help="the application: a path, or a file name found in PSBIN")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the application")
    options = parser.parse_args(argv)
    configure_logging(settings, "pypsrun")
    return execute(settings, options.app, options.args)


def execute(
    settings: Settings,
    app: str,
    args: list[str],
    prog: str = "pypsrun",
    started: Callable[[Run], object] | None = None,
) -> int:
    """Run ``app`` with ``args`` as a whole run; return its exit status (used by pypsitems too).

    ``started`` is called with the run once its clients are up, before the app starts.
    """
    try:
        tls.check_client()
        runs_dir()  # the run files' directory must be this user's own
        run = Run(settings, app, args)
    except PastSetError as err:  # bad app, hosts file or settings: nothing started yet
        sys.stderr.write(f"{prog}: {err}\n")
        return 2
    if not settings.PSHOSTS and run.launcher == "ssh":
        log.info("no PSHOSTS given: clients run on this host only")
    previous = {sig: signal.signal(sig, run.on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    info = {
        "pid": os.getpid(),
        "app": str(run.app_path),
        "args": args,
        "hosts": run.remote_hosts,
        "ssh": settings.PSSSH,
        "launcher": run.launcher,
        "secret": run.wiring.secret,
    }
    record_run(run.run_id, info)
    status = 1
    try:
        run.prestart_app()
        info["ns"] = run.start()
        record_run(run.run_id, info)
        if started is not None:
            started(run)
        status = run.run_app()
        run.finish(quietly=status == 0 and run._interrupts == 0)
    except KeyboardInterrupt:
        status = 130
        run.finish(quietly=False)
    except PastSetError as err:
        sys.stderr.write(f"{prog}: {err}\n")
        status = 1
        run.finish(quietly=False)
    finally:
        run.shutdown()
        forget_run(run.run_id)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


if __name__ == "__main__":
    sys.exit(main())
