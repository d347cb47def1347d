"""Runs one spawned task: ``python -m pastset.commands.runner APP [ARGS...]``.

The application is found in PSBIN on this host and run as ``__main__`` with its
arguments.  When the run ends while the task is still blocked in an operation
(a pi worker waiting for a bag that will never come), the task exits quietly
instead of printing a traceback.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable

from pastset.errors import AppNotFoundError, PastSetConnectionError, RunEndedError
from pastset.proc import die_with_parent
from pastset.psbin import find_spawnable
from pastset.settings import Settings
from pastset.tracebacks import format_user_exception

__all__ = ["main"]


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the task named by ``argv`` and return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.stderr.write("usage: python -m pastset.commands.runner APP [ARGS...]\n")
        return 2
    die_with_parent()
    signal.signal(signal.SIGTERM, _terminate)
    settings = Settings.load(run_helper=False)
    app, args = argv[0], argv[1:]
    try:  # the same confinement as at spawn time, checked again where the code runs
        target = find_spawnable(app, settings.psbin)
    except AppNotFoundError as err:
        sys.stderr.write(f"pastset task {settings.PSTASK} on {os.uname().nodename}: {err}\n")
        return 127
    if isinstance(target, str):  # an allow-listed module: a task that ships with pastset itself
        sys.argv = [app, *args]
        return _run(
            lambda: runpy.run_module(app.removeprefix("module:"), run_name="__main__", alter_sys=True), settings, app
        )
    path = target
    sys.argv = [str(path), *args]
    sys.path.insert(0, str(path.parent))
    return _run(lambda: runpy.run_path(str(path), run_name="__main__"), settings, app)


def _run(body: Callable[[], object], settings: Settings, app: str) -> int:
    """Run the task's code; the end of the run is no error, other errors are reported once."""
    try:
        body()
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        sys.stderr.write(f"{code}\n")
        return 1
    except RunEndedError:
        return 0  # the run ended while this task waited: nothing to report
    except KeyboardInterrupt:
        return 130  # Ctrl-C: the application says so, in one line; its tasks keep quiet
    except PastSetConnectionError as err:
        sys.stderr.write(f"pastset task {settings.PSTASK} ({app}): {err}\n")
        return 1
    except BaseException as err:
        sys.stderr.write(format_user_exception(err))  # the task's own frames, not runner/runpy/pastset
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
