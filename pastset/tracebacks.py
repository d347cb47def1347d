"""Tracebacks that show the user's code: pastset's own frames and the launcher's are left out.

A spawned task runs through :mod:`pastset.commands.runner` and :mod:`runpy`, and
every operation goes through the client library and the socket module; none of
that helps a student find the line of *their* program that failed.  These
helpers format an exception with those frames removed (all of them are kept if
nothing else would be left).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import socket
import sys
import traceback
from types import TracebackType

__all__ = ["format_user_exception", "install_interrupt_hook", "is_internal"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_HIDDEN = tuple(os.path.abspath(m.__file__) for m in (runpy, socket) if m.__file__)


def is_internal(filename: str) -> bool:
    """True for a frame of pastset itself, of runpy, of socket or of an installed library's Pyro5/msgpack."""
    path = os.path.abspath(filename)
    return (
        path.startswith(_PACKAGE)
        or path in _HIDDEN
        or f"{os.sep}Pyro5{os.sep}" in path
        or f"{os.sep}msgpack{os.sep}" in path
        or filename.startswith("<frozen runpy")
    )


def _user_frames(tb: TracebackType | None) -> traceback.StackSummary:
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if not is_internal(f.filename)]
    return traceback.StackSummary.from_list(mine or frames)


def format_user_exception(err: BaseException) -> str:
    """``err`` as Python would print it, with only the user's frames (causes and contexts included)."""
    seen: set[int] = set()
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__cause__ is not None:
            chain.append((current, "\nThe above exception was the direct cause of the following exception:\n\n"))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((current, "\nDuring handling of the above exception, another exception occurred:\n\n"))
            current = current.__context__
        else:
            chain.append((current, ""))
            current = None
    parts: list[str] = []
    for exc, joiner in reversed(chain):
        parts.append(joiner)  # how ``exc`` follows from the exception printed above it
        frames = _user_frames(exc.__traceback__)
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(frames.format())
        parts.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(parts)


def install_interrupt_hook(kind: type[BaseException]) -> None:
    """Make an uncaught ``kind`` (pastset's Interrupted) print its one-line message and no traceback."""
    previous = sys.excepthook
    if getattr(previous, "pastset_interrupt_hook", False):
        return

    def hook(cls: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        if isinstance(err, kind):
            prog = os.path.basename(sys.argv[0] or "python")
            sys.stderr.write(f"{prog}: {err}\n")
            # End as an interrupted Python program does (killed by SIGINT, status 130 to a shell).
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            return
        previous(cls, err, tb)

    hook.pastset_interrupt_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
