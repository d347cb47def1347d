"""A PastSet client process: registers its specs, then runs tasks it is given.

The worker pulls: when idle it asks the scheduler for the next task and blocks
until there is one, runs it with PSPYTHON through :mod:`pastset.runner`, reports
how it ended (status and the tail of its stderr), and asks again.  It stops when
the scheduler says so (halt or end of run), when its lifeline closes, or on
SIGTERM — and then ends the tasks it started.
"""

from __future__ import annotations

import collections
import logging
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

import Pyro5.api
import Pyro5.errors

from .errors import PastSetConnectionError
from .naming import scheduler_name
from .proc import exit_status, stop_process
from .settings import Settings

__all__ = ["Worker", "host_specs"]

log = logging.getLogger(__name__)

TAIL_LINES = 20


def _speed() -> float:
    """A quick speed figure: millions of simple Python loop steps per second."""
    n = 200_000
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i & 7
    return round(n / (time.perf_counter() - start) / 1e6, 2)


def host_specs() -> dict[str, Any]:
    """Real specs of this host: name, system, arch, cores, memory, disk, speed."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        memory = 0
    return {
        "host": socket.gethostname(),
        "system": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "memory": memory,
        "disk": shutil.disk_usage(os.getcwd()).free,
        "speed": _speed(),
        "python": platform.python_version(),
        "pid": os.getpid(),
    }


def _python(settings: Settings) -> list[str]:
    # The default "python" may not exist or may lack pastset; this interpreter has it.
    if settings.sources.get("PSPYTHON", "default") == "default":
        return [sys.executable]
    return shlex.split(settings.PSPYTHON)


class Worker:
    """Runs spawned tasks for one run until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: subprocess.Popen | None = None
        host, port = settings.ns_address()
        try:
            with Pyro5.api.Proxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}") as ns:
                ns._pyroTimeout = 10
                uri = ns.lookup(scheduler_name(settings.PSRUN))
        except (Pyro5.errors.CommunicationError, Pyro5.errors.NamingError) as err:
            raise PastSetConnectionError(
                f"client cannot reach the scheduler of run {settings.PSRUN!r} at {host}:{port}: {err}"
            ) from None
        self.scheduler = Pyro5.api.Proxy(uri)
        self.scheduler._pyroSerializer = "msgpack"
        self.cid = ""

    def stop(self) -> None:
        """Stop asking for tasks and end the running one (called from other threads)."""
        self._stop.set()
        with self._lock:
            proc = self._running
        if proc is not None:
            threading.Thread(target=stop_process, args=(proc, 0.0), daemon=True).start()

    def run(self) -> int:
        """Register and serve tasks; return this process's exit status."""
        try:
            self.cid = self.scheduler.register(host_specs())
            while not self._stop.is_set():
                task = self.scheduler.next_task(self.cid)
                if task is None:
                    break
                status, tail = self._run_task(task)
                self.scheduler.task_done(self.cid, task["id"], status, tail)
        except Pyro5.errors.CommunicationError as err:
            if self._stop.is_set():
                return 0
            log.error("client %s lost its scheduler (%s); stopping", self.cid, err)
            return 1
        return 0

    def _run_task(self, task: dict[str, Any]) -> tuple[int, str]:
        env = self.settings.child_environment(os.environ)
        env["PSTASK"] = task["id"]
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [*_python(self.settings), "-m", "pastset.runner", task["app"], *task["args"]]
        log.info("client %s runs task %s: %s", self.cid, task["id"], " ".join(cmd))
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as err:
            return 127, f"cannot start {cmd[0]!r} (PSPYTHON): {err}"
        with self._lock:
            self._running = proc
        if self._stop.is_set():
            self.stop()
        assert proc.stderr is not None
        tail = _forward(proc.stderr, sys.stderr.buffer)
        code = proc.wait()
        with self._lock:
            self._running = None
        return exit_status(code), tail


def _forward(source: IO[bytes], sink: IO[bytes]) -> str:
    """Copy ``source`` to ``sink`` as it comes; return its last lines."""
    tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
    for line in iter(source.readline, b""):
        tail.append(line)
        try:
            sink.write(line)
            sink.flush()
        except (OSError, ValueError):
            pass
    source.close()
    return b"".join(tail).decode(errors="replace")
