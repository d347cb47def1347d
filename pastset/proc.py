"""Process lifetimes: lifelines, bounded escalating shutdown, exit statuses.

Every process a run starts gets a *lifeline*: its standard input is a pipe from
the process that started it.  End of file on that pipe means the parent is gone
(or wants us gone), locally or across SSH alike, so nothing outlives its run.
On Linux a child also asks the kernel for a signal when its parent dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

__all__ = ["die_with_parent", "watch_lifeline", "stop_process", "exit_status"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - unusual libc
        return


def watch_lifeline(on_close: Callable[[], None], stream: int = 0) -> threading.Thread:
    """Call ``on_close`` once file descriptor ``stream`` reaches end of file."""

    def watch() -> None:
        try:
            while os.read(stream, 4096):
                pass
        except OSError:
            pass
        on_close()

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def stop_process(proc: subprocess.Popen, grace: float = 5.0, group: bool = False) -> int | None:
    """Wait up to ``grace`` s, then SIGTERM, wait, SIGKILL; return the exit code.

    With ``group`` the signals go to the process group the child leads (it was
    started with ``start_new_session=True``), so its own children go too.
    """

    def send(sig: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    for sig, wait in ((None, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            log.debug("sending %s to %s", signal.Signals(sig).name, proc.args)
            send(sig)
        try:
            code = proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        if group and sig is None:
            send(signal.SIGKILL)  # reap stragglers left in the group
        return code
    return proc.returncode


def exit_status(returncode: int | None) -> int:
    """A shell-style exit status: 128+N for a process killed by signal N."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode
