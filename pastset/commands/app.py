"""Runs a run's application: ``python -m pastset.commands.app --go FD APP [ARGS...]``.

pypsrun starts the application's interpreter at the same time as the server
and the clients, so that its start and the import of pastset overlap theirs.
This module pays both, then waits for one line on file descriptor FD: the
run's name server address, written once the clients have registered.  Only
then does the application's code run, as ``__main__`` with its arguments, as
``python APP ARGS`` would run it (``sys.argv``, ``sys.path[0]``, exit status).
End of file instead of a line means the run did not start: exit quietly.
"""

from __future__ import annotations

import os
import runpy
import sys

import pastset  # noqa: F401 - imported now, while the server and clients start
from pastset.settings import adopt_environment

__all__ = ["main"]


def _line(fd: int) -> str:
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        data = bytearray()
        while not data.endswith(b"\n"):
            byte = pipe.read(1)
            if not byte:
                return ""
            data += byte
    return data.decode().strip()


def main(argv: list[str] | None = None) -> int:
    """Wait for the go line, then run the application as ``__main__``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[0] != "--go" or not argv[1].isdigit():
        sys.stderr.write("usage: python -m pastset.commands.app --go FD APP [ARGS...]\n")
        return 2
    try:
        address = _line(int(argv[1]))
    except KeyboardInterrupt:  # Ctrl-C while the run starts: pypsrun says what happened
        return 130
    if not address:
        return 1
    adopt_environment({"PSNS": address})
    app = argv[2]
    sys.argv = [app, *argv[3:]]
    sys.path[0] = os.path.dirname(os.path.abspath(app))
    runpy.run_path(app, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
