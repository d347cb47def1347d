"""``python -m pastset.commands.remote ROLE ARGS...``: a pastset process on another host.

Started over SSH by pypsrun (and pypsclean).  The first line of standard input
is the process's environment as JSON — so nothing secret ever appears on a
command line — and the rest of standard input is the lifeline: when it closes,
the process stops.  Started by pbsdsh, ``client --env-file PATH`` reads the
environment from that private file instead, with no lifeline.
"""

from __future__ import annotations

import json
import os
import sys

from pastset.settings import adopt_environment

__all__ = ["main"]


def _first_line() -> bytes:
    # Read byte by byte: whatever follows the line is the lifeline, left unread.
    data = bytearray()
    while True:
        byte = os.read(0, 1)
        if not byte or byte == b"\n":
            return bytes(data)
        data += byte


def main(argv: list[str] | None = None) -> int:
    """Apply the environment from stdin, then run the named role."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("server", "client", "clean"):
        sys.stderr.write("usage: python -m pastset.commands.remote server|client|clean ARGS...\n")
        return 2
    role, rest = argv[0], argv[1:]
    lifeline = True
    if rest[:1] == ["--env-file"] and len(rest) > 1:
        # Started by pbsdsh: the environment is in a private file, standard input is not ours.
        try:
            with open(rest[1]) as source:
                env = json.load(source)
        except (OSError, ValueError) as err:
            sys.stderr.write(f"pastset remote: cannot read the run's environment from {rest[1]}: {err}\n")
            return 2
        rest, lifeline = rest[2:], False
    else:
        line = _first_line()
        try:
            env = json.loads(line) if line else {}
        except ValueError:
            sys.stderr.write("pastset remote: the first line of input must be the environment as JSON\n")
            return 2
    adopt_environment(env)
    if role == "server":
        from pastset.commands.server import main as server_main

        return server_main(rest)
    if role == "client":
        from pastset.commands.client import main as client_main

        return client_main([*rest, "--lifeline"] if lifeline else rest)
    from pastset.commands.clean import main as clean_main

    return clean_main([*rest, "--here"])


if __name__ == "__main__":
    sys.exit(main())
