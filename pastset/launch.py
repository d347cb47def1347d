"""Starting and ending a whole run: what ``pypsrun`` does.

A run is: the server side (name server, PastSet space, scheduler in one process),
PSPROCS clients, and the application.  Readiness is signalled, never guessed:
the server writes its address on a pipe once it listens, clients count as ready
when the scheduler has their registration.  Every child's standard input is its
lifeline, so if this process dies, even by SIGKILL, the children see end of file
and stop.  When the application exits the run ends (after it has gone quiet if
the application succeeded), clients and server are stopped with a bounded,
escalating shutdown, and the application's exit status is returned.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import Pyro5.api
import Pyro5.errors

from .errors import AppNotFoundError, ConfigurationError, PastSetConnectionError
from .naming import scheduler_name
from .proc import exit_status, stop_process
from .settings import Settings, this_host_names
from .space import find_in_path

__all__ = ["Run", "find_app", "new_run_id", "read_hosts"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0


def new_run_id() -> str:
    """A run identity unique on this machine and hard to guess."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{secrets.token_hex(4)}"


def find_app(app: str, psbin: list[str]) -> Path:
    """The application file: as given if it exists, else looked up in PSBIN."""
    given = Path(app)
    if given.is_file():
        return given.resolve()
    found = find_in_path(app, psbin)
    if found is None:
        raise AppNotFoundError(
            f"application {app!r} not found as a file nor in PSBIN ({os.pathsep.join(psbin)}); "
            "give its path or set PSBIN to its directory"
        )
    return found


def read_hosts(path: str) -> list[str]:
    """Host names from a hosts file: one a line, '#' comments, blank lines skipped."""
    try:
        text = Path(path).expanduser().read_text()
    except OSError as err:
        raise ConfigurationError(f"PSHOSTS={path!r} cannot be read: {err.strerror}") from None
    hosts = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise ConfigurationError(f"{path}:{number}: expected one host name on the line, got {raw.strip()!r}")
        hosts.append(line)
    return hosts


class Run:
    """One local run of an application with its server and clients."""

    def __init__(self, settings: Settings, app: str, args: list[str]) -> None:
        self.settings = settings
        self.run_id = new_run_id()
        self.app_path = find_app(app, settings.psbin)
        psbin = settings.psbin
        if str(self.app_path.parent) not in psbin:
            psbin = [*psbin, str(self.app_path.parent)]  # an app's companions sit next to it
        settings.PSBIN = os.pathsep.join(psbin)
        settings.PSRUN = self.run_id
        self.args = args
        self._check_local()
        self.server: subprocess.Popen | None = None
        self.clients: list[subprocess.Popen] = []
        self.app: subprocess.Popen | None = None
        self.scheduler: Any = None
        self._interrupts = 0

    def _check_local(self) -> None:
        local = this_host_names()
        if self.settings.PSMASTER.lower() not in local:
            raise ConfigurationError(
                f"PSMASTER={self.settings.PSMASTER!r} is another host; this version runs the server "
                "side on this host only: unset PSMASTER"
            )
        if self.settings.PSHOSTS:
            hosts = read_hosts(self.settings.PSHOSTS)
            remote = [h for h in hosts if h.lower() not in local]
            if remote:
                raise ConfigurationError(
                    f"hosts file {self.settings.PSHOSTS} names other hosts ({', '.join(remote[:3])}); "
                    "this version launches clients on this host only: unset PSHOSTS"
                )

    # ------------------------------------------------------------ children
    def _env(self) -> dict[str, str]:
        env = self.settings.child_environment(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        root = str(Path(__file__).resolve().parent.parent)
        if root not in [*site.getsitepackages(), site.getusersitepackages()]:
            # Running from a checkout (bin/ wrappers): children must import this pastset too.
            paths = [root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _python(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def start_server(self) -> str:
        """Start the server side and return its name server address when it listens."""
        cmd = self._python(
            "pastset.commands.server",
            "--scheduler",
            "--run",
            self.run_id,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready",
        )
        self.server = subprocess.Popen(
            cmd, env=self._env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        assert self.server.stdout is not None
        ready, _, _ = select.select([self.server.stdout], [], [], READY_TIMEOUT)
        line = self.server.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("READY "):
            raise PastSetConnectionError(
                f"the PastSet server did not start (exit status {self.server.poll()}); "
                "see the messages above, or set PSLOGLEVEL=debug"
            )
        address = line.split()[1]
        self.settings.PSNS = address
        host, _, port = address.rpartition(":")
        with Pyro5.api.Proxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}") as ns:
            uri = ns.lookup(scheduler_name(self.run_id))
        self.scheduler = Pyro5.api.Proxy(uri)
        self.scheduler._pyroSerializer = "msgpack"
        log.debug("run %s: server ready at %s", self.run_id, address)
        return address

    def start_clients(self) -> None:
        """Start PSPROCS clients and wait for PSWAITPROCS of them to register."""
        env = self._env()
        for number in range(self.settings.PSPROCS):
            cmd = self._python("pastset.commands.client", "--run", self.run_id, "--number", str(number), "--lifeline")
            self.clients.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, start_new_session=True))
        want = min(self.settings.waitprocs, self.settings.PSPROCS) if self.settings.PSPROCS else 0
        if want <= 0:
            return
        done = threading.Event()
        failed: list[str] = []

        def registered() -> None:
            with Pyro5.api.Proxy(self.scheduler._pyroUri) as sched:
                sched._pyroSerializer = "msgpack"
                try:
                    sched.wait_clients(want, READY_TIMEOUT)
                except Pyro5.errors.CommunicationError as err:
                    failed.append(f"server: {err}")
            done.set()

        def watch(number: int, proc: subprocess.Popen) -> None:
            code = proc.wait()
            if not done.is_set():
                failed.append(f"client {number} exited with status {exit_status(code)}")
                done.set()

        threading.Thread(target=registered, daemon=True).start()
        for number, proc in enumerate(self.clients):
            threading.Thread(target=watch, args=(number, proc), daemon=True).start()
        done.wait(READY_TIMEOUT + 1)
        count = self.scheduler.wait_clients(want, 0)
        if count < want:
            raise PastSetConnectionError(
                f"only {count} of {want} clients registered ({'; '.join(failed) or 'timed out'}); "
                "see the messages above"
            )
        log.debug("run %s: %d clients registered", self.run_id, count)

    # ----------------------------------------------------------------- app
    def run_app(self) -> int:
        """Run the application here and return its exit status."""
        cmd = [sys.executable, str(self.app_path), *self.args]
        env = self._env()
        self.app = subprocess.Popen(cmd, env=env)
        return exit_status(self.app.wait())

    def on_interrupt(self, signum: int, frame: object) -> None:
        """SIGINT/SIGTERM: pass it on to the application, then insist."""
        self._interrupts += 1
        app = self.app
        if app is None or app.poll() is not None:
            raise KeyboardInterrupt
        if self._interrupts == 1:
            # From a terminal the app got the same Ctrl-C; from kill(1) it did not.
            def forward() -> None:
                time.sleep(0.3)
                if app.poll() is None:
                    app.send_signal(signal.SIGINT)

            threading.Thread(target=forward, daemon=True).start()
        else:
            app.kill()

    # ----------------------------------------------------------------- end
    def finish(self, quietly: bool) -> None:
        """End the run (waiting for quiet if ``quietly``), then stop every process."""
        if self.scheduler is not None and self.server is not None and self.server.poll() is None:
            try:
                with Pyro5.api.Proxy(self.scheduler._pyroUri) as sched:
                    sched._pyroSerializer = "msgpack"
                    sched.finish(quietly, None)
            except KeyboardInterrupt:
                log.warning("interrupted while waiting for running tasks; stopping them")
                self._end_now()
            except Pyro5.errors.CommunicationError as err:
                log.warning("could not end the run through the server: %s", err)
        self.shutdown()

    def _end_now(self) -> None:
        try:
            with Pyro5.api.Proxy(self.scheduler._pyroUri) as sched:
                sched._pyroSerializer = "msgpack"
                sched._pyroTimeout = 5
                sched.finish(False, None)
        except Pyro5.errors.CommunicationError:
            pass

    def shutdown(self) -> None:
        """Stop clients, then the server; bounded, escalating, nothing left behind."""
        if self.scheduler is not None:
            self.scheduler._pyroRelease()
        stoppers = [threading.Thread(target=stop_process, args=(proc, 5.0, True)) for proc in self.clients]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()
        for proc in self.clients:
            _close_stdin(proc)
        if self.server is not None:
            _close_stdin(self.server)
            stop_process(self.server, 5.0, group=True)
            if self.server.stdout is not None:
                self.server.stdout.close()


def _close_stdin(proc: subprocess.Popen) -> None:
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
