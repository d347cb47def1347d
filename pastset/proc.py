"""Process lifetimes: lifelines, bounded escalating shutdown, exit statuses.

Every process a run starts gets a *lifeline*: its standard input is a pipe from
the process that started it.  End of file on that pipe means the parent is gone
(or wants us gone), locally or across SSH alike, so nothing outlives its run.
On Linux a child also asks the kernel for a signal when its parent dies.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from pastset.entrypoints import MODULES

__all__ = ["die_with_parent", "end_pids", "exit_status", "processes_of_run", "stop_process", "watch_lifeline"]

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


def processes_of_run(run_id: str) -> list[int]:
    """Pids of this user's processes that belong to run ``run_id``.

    A process belongs to a run when its command line carries ``--run RUN_ID``
    (server, clients) or its environment has ``PSRUN=RUN_ID`` (apps, tasks).
    Matching the run's identity, never a program name, keeps other users' and
    other runs' processes safe.
    """
    found = []
    me, uid = os.getpid(), os.getuid()
    marker_env = f"PSRUN={run_id}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        in_args = any(a == b"--run" and b == run_id.encode() for a, b in itertools.pairwise(args))
        cleaner = any(a == b"clean" or a.endswith((b"pypsclean", MODULES["clean"].encode())) for a in args)
        if (in_args and not cleaner) or marker_env in environ:
            found.append(int(entry.name))
    return sorted(found)


def end_pids(pids: list[int], grace: float = 3.0) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` s, SIGKILL what is left; return the ended ones."""
    import time

    ended = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            ended.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    until = time.monotonic() + grace
    alive = list(ended)
    while alive and time.monotonic() < until:
        alive = [pid for pid in alive if _exists(pid)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return ended


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class LocalProcess:
    """A child on this host, with the interface the launcher uses for every process.

    It leads its own process group (started with ``start_new_session=True``), so
    ending it ends whatever it started too.
    """

    host = "localhost"

    def __init__(self, argv: list[str], env: dict[str, str], capture_stdout: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if capture_stdout else None,
            start_new_session=True,
        )

    def poll(self) -> int | None:
        """Exit status, or None while running."""
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit status (None on timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close_stdin(self) -> None:
        """Close the lifeline."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def send_line(self, line: str) -> None:
        """Write one line to its standard input (the lifeline stays open)."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write(f"{line}\n".encode())
                self.proc.stdin.flush()
            except OSError:  # it has gone already: its watcher says why
                pass

    def kill(self) -> None:
        """SIGKILL the process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace: float) -> int | None:
        """Bounded, escalating stop of the whole group."""
        return stop_process(self.proc, grace, group=True)

    def tail(self) -> str:
        """Local children write straight to our stderr: nothing kept."""
        return ""

    def readline(self, timeout: float) -> str:
        """The first line of its stdout (a server's READY line)."""
        import select

        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode() if ready else ""
