"""A PastSet client process: registers its specs, then runs tasks it is given.

The worker pulls: when idle it asks the scheduler for the next task and blocks
until there is one, runs it with PSPYTHON through :mod:`pastset.commands.runner`, reports
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
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import IO, Any

import Pyro5.errors

from pastset.core.naming import scheduler_name
from pastset.entrypoints import MODULES
from pastset.errors import PastSetConnectionError
from pastset.proc import exit_status, stop_process
from pastset.settings import Settings, Wiring
from pastset.transport.proxies import connection_error, lookup, proxy

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

    def __init__(
        self, settings: Settings, wiring: Wiring | None = None, identity: dict[str, str] | None = None
    ) -> None:
        """Find the run's scheduler; ``identity`` (number, batch node) goes into the registered specs."""
        self.settings = settings
        #: the run this client serves (from its settings unless given)
        self.wiring = wiring or Wiring.of(settings)
        self.identity = dict(identity or {})
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._lost = 0
        host, port = self.wiring.ns_address()
        run, secret = self.wiring.run, self.wiring.secret
        try:
            self.uri = lookup(self.wiring.ns, scheduler_name(run), secret)
        except Pyro5.errors.NamingError as err:
            raise PastSetConnectionError(f"run {run!r} has no scheduler at {host}:{port}: {err}") from None
        except Pyro5.errors.CommunicationError as err:
            raise connection_error(f"{host}:{port}", err) from None
        self.scheduler = proxy(self.uri, secret)
        self.cid = ""

    def stop(self) -> list[threading.Thread]:
        """Stop asking for tasks and end the running ones; return the threads ending them.

        Never call it from a signal handler: it takes locks the interrupted
        code may hold.  (pypsclient's handler only raises SystemExit and calls
        :meth:`end` once the main thread has unwound.)
        """
        self._stop.set()
        with self._lock:
            procs = list(self._running)
        enders = [threading.Thread(target=stop_process, args=(proc, 0.0), daemon=True) for proc in procs]
        for ender in enders:
            ender.start()
        return enders

    def end(self, timeout: float = 10.0) -> None:
        """:meth:`stop`, then wait (bounded) until the running tasks are gone."""
        until = time.monotonic() + timeout
        for ender in self.stop():
            ender.join(max(0.0, until - time.monotonic()))

    def run(self) -> int:
        """Register, then serve tasks in PSSLOTS slots; return this process's exit status."""
        try:
            self.cid = self.scheduler.register({**host_specs(), "slots": self.settings.PSSLOTS, **self.identity})
        except Pyro5.errors.CommunicationError as err:
            log.error("client cannot register: %s", err)
            return 1
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        extra = [threading.Thread(target=self._slot, name=f"slot-{n}") for n in range(1, self.settings.PSSLOTS)]
        for thread in extra:
            thread.start()
        status = self._slot(self.scheduler)
        for thread in extra:
            thread.join()
        return status or self._lost

    def _slot(self, scheduler: Any = None) -> int:
        """One slot: ask for a task, run it, report, until told to stop."""
        own = scheduler is None
        scheduler = scheduler or proxy(self.uri, self.wiring.secret)
        try:
            while not self._stop.is_set():
                task = scheduler.next_task(self.cid)
                if task is None:
                    break
                status, tail = self._run_task(task)
                scheduler.task_done(self.cid, task["id"], status, tail)
        except Pyro5.errors.CommunicationError as err:
            if self._stop.is_set():
                return 0
            log.error("client %s lost its scheduler (%s); stopping", self.cid, err)
            self.stop()
            return 1
        finally:
            if own:
                scheduler._pyroRelease()
        return 0

    def _heartbeat(self) -> None:
        beat = proxy(self.uri, self.wiring.secret, timeout=self.settings.PSDEADTIME)
        interval = self.settings.PSDEADTIME / 4
        while not self._stop.wait(interval):
            try:
                alive = beat.heartbeat(self.cid)
                if alive is None:  # the run ended (a successful one too): no warning, the slots stop by themselves
                    log.info("client %s: the run has ended", self.cid)
                    self.stop()
                    return
                if not alive:
                    log.warning("client %s was given up on by the run; stopping", self.cid)
                    self._lost = 1
                    self.stop()
                    os.kill(os.getpid(), signal.SIGTERM)  # wake the main thread's blocking call
                    return
            except Pyro5.errors.CommunicationError:
                if not self._stop.is_set():
                    log.error("client %s cannot reach its scheduler; stopping", self.cid)
                    self._lost = 1
                    self.stop()
                    os.kill(os.getpid(), signal.SIGTERM)
                return

    def _run_task(self, task: dict[str, Any]) -> tuple[int, str]:
        env = self.settings.child_environment(replace(self.wiring, task=task["id"]))
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [*_python(self.settings), "-m", MODULES["runner"], task["app"], *task["args"]]
        log.info("client %s runs task %s: %s", self.cid, task["id"], " ".join(cmd))
        try:
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as err:
            return 127, f"cannot start {cmd[0]!r} (PSPYTHON): {err}"
        with self._lock:
            self._running.add(proc)
        if self._stop.is_set():
            self.stop()
        assert proc.stdout is not None and proc.stderr is not None
        # Whole lines only: tasks running side by side (and the other clients
        # writing to the same terminal or pipe) must never split each other's lines.
        out = threading.Thread(target=_forward, args=(proc.stdout, sys.stdout.buffer), daemon=True)
        out.start()
        tail = _forward(proc.stderr, sys.stderr.buffer)
        out.join()
        code = proc.wait()
        with self._lock:
            self._running.discard(proc)
        return exit_status(code), tail


_WRITE_LOCK = threading.Lock()


def _forward(source: IO[bytes], sink: IO[bytes]) -> str:
    """Copy ``source`` to ``sink`` a whole line at a time, each in one write; return its last lines."""
    tail: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
    for line in iter(source.readline, b""):
        tail.append(line)
        try:
            with _WRITE_LOCK:
                sink.write(line)
                sink.flush()
        except (OSError, ValueError):
            pass
    source.close()
    return b"".join(tail).decode(errors="replace")
