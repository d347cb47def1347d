"""Process lifetimes: lifelines, bounded escalating shutdown, exit statuses.

Every process a run starts gets a *lifeline*: its standard input is a pipe from
the process that started it.  End of file on that pipe means the parent is gone
(or wants us gone), locally or across SSH alike, so nothing outlives its run.
On Linux a child also asks the kernel for a signal when its parent dies.
"""

from __future__ import annotations

import ctypes
import io
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

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


class _Forked(subprocess.Popen):
    """A child that is a fork of this process running ``python -m MODULE ARGS``'s main, without exec.

    A new interpreter would pay its start and import pastset again; a fork
    shares what this process has imported already, which is most of what a
    server or client needs.  Only pastset's own commands are started this way
    (never an application), and only before this process starts any thread.
    Everything else is subprocess.Popen's: pipes, wait, signals, exit status.
    """

    def __init__(self, module: str, args: list[str], env: dict[str, str], **options: Any) -> None:
        self._module = module
        self._module_args = list(args)
        super().__init__([sys.executable, "-m", module, *args], env=env, **options)

    def _execute_child(  # type: ignore[override]
        self,
        args: Any,
        executable: Any,
        preexec_fn: Any,
        close_fds: Any,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: Any,
        shell: Any,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        *rest: Any,
    ) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write our buffered output again
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            code = 1
            try:
                os.setsid()
                if p2cread != -1:
                    os.dup2(p2cread, 0)
                if c2pwrite != -1:
                    os.dup2(c2pwrite, 1)
                for fd in {p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite} - {-1, 0, 1, 2}:
                    os.close(fd)
                code = _run_module(self._module, self._module_args, dict(env))
            finally:
                os._exit(code)
        self.pid = pid
        self._child_created = True
        for fd in (p2cread, c2pwrite, errwrite):
            if fd != -1:
                os.close(fd)


def _arg_area() -> tuple[int, int] | None:
    """Start and end address of this process's command line in memory (Linux), as /proc shows it."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of proc(5)
    except (OSError, IndexError, ValueError):
        return None


def fork_title(module: str, args: list[str]) -> list[str] | None:
    """The command line a forked child shows for ``python -m module args``, or None if it cannot.

    A forked child still has its parent's command line; it rewrites it in place
    so that ``ps`` and :func:`processes_of_run` see which run it belongs to
    (``--run RUN_ID``).  The new one must fit where the old one was.
    """
    area = _arg_area()
    if area is None:
        return None
    room = area[1] - area[0]
    for title in ([sys.executable, "-m", module, *args], [module.rsplit(".", 1)[-1], *args]):
        if len(b"\0".join(a.encode() for a in title)) + 1 <= room:
            return title
    return None


def _retitle(title: list[str]) -> None:
    area = _arg_area()
    if not title or area is None:
        return
    text = b"\0".join(a.encode() for a in title) + b"\0"
    room = area[1] - area[0]
    if len(text) > room:
        return
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(area[0])
            mem.write(text + b"\0" * (room - len(text)))
    except OSError:
        log.debug("could not rewrite the command line of forked %s", title)


def _run_module(module: str, args: list[str], env: dict[str, str]) -> int:
    """In a forked child: become ``python -m module args`` with environment ``env``; return the exit status."""
    import atexit
    import importlib
    import traceback

    atexit._clear()  # the parent's exit handlers are the parent's
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _retitle(fork_title(module, args) or [])
    # The parent's sys.std* may be anything (a test runner's capture, a notebook's stream): use the descriptors.
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, write_through=True)
    logging.root.handlers.clear()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [module, *args]
    try:
        # The module's main(), not runpy: runpy needs its loader's get_code, which import hooks
        # installed in the parent (pytest's assertion rewriter, for one) may not have.
        code: Any = importlib.import_module(module).main(args)
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


class LocalProcess:
    """A child on this host, with the interface the launcher uses for every process.

    It leads its own process group (started with ``start_new_session=True``), so
    ending it ends whatever it started too.  With ``fork`` (pastset's own
    ``python -m`` commands only) it is forked from this process instead of
    started afresh, sharing the modules already imported.
    """

    host = "localhost"

    def __init__(self, argv: list[str], env: dict[str, str], capture_stdout: bool = False, fork: bool = False) -> None:
        stdout = subprocess.PIPE if capture_stdout else None
        if fork and argv[1:2] == ["-m"] and fork_title(argv[2], argv[3:]) is not None:
            self.proc: subprocess.Popen = _Forked(
                argv[2], argv[3:], env, stdin=subprocess.PIPE, stdout=stdout, start_new_session=True
            )
            return
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=stdout, start_new_session=True)

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
