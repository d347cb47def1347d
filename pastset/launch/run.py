"""Starting and ending a whole run: what ``pypsrun`` does.

A run is: the server side (name server, PastSet space, scheduler in one process)
on PSMASTER, PSPROCS clients on the hosts of PSHOSTS, and the application here.
A host that is this machine (localhost, its name or one of its addresses) gets
plain local processes; other hosts are reached over SSH (:mod:`pastset.launch.ssh`).
Inside a batch job (PSLAUNCH, :mod:`pastset.launch.batch`) the clients start
through the batch system instead: one ``srun`` job step, or ``pbsdsh``.

Readiness is signalled, never guessed: the server writes its address once it
listens, clients count as ready when the scheduler has their registration.
When the application exits the run ends (after it has gone quiet if the
application succeeded), clients and server are stopped with a bounded,
escalating shutdown, and the application's exit status is returned.

:class:`Run` holds the state of one run and the order of its steps; the parts
that need none of that state live beside it: the plan made before anything
starts (:mod:`pastset.launch.plan`: the run's id and wiring, the placement of
its clients), the start of its processes (:mod:`pastset.launch.children`),
what is watched while the application runs (:mod:`pastset.launch.watch`: stop
requests, stalls, the progress line), and the end of its processes with the
record it leaves (:mod:`pastset.launch.teardown`).  The public names that
moved there are importable from here too.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import Pyro5.errors

from pastset.core.naming import scheduler_name
from pastset.entrypoints import MODULES, python_m
from pastset.errors import PastSetConnectionError, PastSetError
from pastset.launch.batch import (
    client_shell_command,
    node_address,
    nodes_out,
    pbsdsh_commands,
    srun_argv,
    write_env_file,
)
from pastset.launch.children import READY_TIMEOUT, Process, await_clients, package_path_env, remote_command
from pastset.launch.plan import find_app, new_run_id, new_wiring, place_clients
from pastset.launch.ssh import Connection, SshCommandProcess, connect, route_to, ssh_resolve
from pastset.launch.teardown import keep_run_record, stop_all
from pastset.launch.watch import end_process, show_progress, watch_health, watch_stop
from pastset.proc import LocalProcess, exit_status
from pastset.settings import SECRETS, Settings, batch_environment, is_this_host, this_host_names
from pastset.transport import tls
from pastset.transport.proxies import lookup, proxy

__all__ = ["READY_TIMEOUT", "Process", "Run", "find_app", "new_run_id", "place_clients", "remote_command"]

log = logging.getLogger(__name__)


class Run:
    """One run of an application with its server and clients."""

    def __init__(self, settings: Settings, app: str | None, args: list[str]) -> None:
        """A run of ``app`` with ``args``; ``app`` None: the calling program is the application (local())."""
        self.settings = settings
        self.run_id = new_run_id()
        self.app_path = None if app is None else find_app(app, settings.psbin)
        #: how this run's processes find each other; the secret is handed on by environment or SSH stdin only
        self.wiring = new_wiring(self.run_id, settings.psbin, self.app_path)
        SECRETS.add(self.wiring.secret)  # scrubbed from every log line from now on
        self.args = args
        self.local_names = this_host_names()
        self._local: dict[str, bool] = {}
        self.master = settings.PSMASTER
        #: slots: the batch job's task slots, one entry (a node) per slot; empty unless launched by it
        self.launcher, self.placement, self.slots = place_clients(settings)
        node = batch_environment().get("SLURMD_NODENAME", "")
        if self.launcher == "srun" and node:
            self.local_names.add(node.lower())
        log.info("clients start by %s", self.launcher)
        self.client_labels: list[str] = []
        self.env_file: Path | None = None
        self.connections: dict[str, Connection] = {}
        self.server: Process | None = None
        self.clients: list[Process] = []
        self.app: subprocess.Popen | None = None
        self._go: int | None = None  # write end of the prestarted app's go pipe
        self._early: list[LocalProcess] = []  # local clients started before the server was up
        self._told = False  # whether they were given its address
        self.scheduler: Any = None
        self._interrupts = 0
        #: set when the run was ended by pypsrun itself: the exit status to return instead of the app's
        self.verdict: int | None = None

    def is_local(self, host: str) -> bool:
        """True if ``host`` names this machine, by a name or any address of its interfaces."""
        known = self._local.get(host)
        if known is None:
            known = self._local[host] = is_this_host(host, self.local_names)
        return known

    @property
    def remote_hosts(self) -> list[str]:
        """The other hosts this run uses, master first, each once."""
        hosts = [self.master] if self.master else []
        if self.launcher == "ssh":
            hosts += self.placement
        return list(dict.fromkeys(h for h in hosts if not self.is_local(h)))

    @property
    def custom_ssh(self) -> bool:
        """True if PSSSH names a command other than plain ssh (then that command is used)."""
        return self.settings.PSSSH.strip() != "ssh"

    # ---------------------------------------------------------------- hosts
    def connect_hosts(self) -> None:
        """Open SSH connections to every other host, in parallel; fail fast naming the host."""
        hosts = self.remote_hosts
        if not hosts or self.custom_ssh:
            return
        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            futures = {h: pool.submit(connect, h, self.settings.PSSSHACCEPT) for h in hosts}
        problems = []
        for host, future in futures.items():
            try:
                self.connections[host] = future.result()
            except PastSetError as err:
                problems.append(str(err))
        if problems:
            raise PastSetConnectionError("; ".join(problems))
        log.debug("connected to %s", ", ".join(hosts))

    def _address_for_clients(self) -> str:
        """The address the server binds: loopback if everything is here, else one others reach."""
        if not any(not self.is_local(h) for h in self.placement):
            return "127.0.0.1"
        first = next(h for h in self.placement if not self.is_local(h))
        if self.launcher in ("srun", "pbsdsh"):
            return route_to(node_address(first))
        if first in self.connections:
            return self.connections[first].local_address
        return route_to(ssh_resolve(self.settings.PSSSH, first))

    # ------------------------------------------------------------ children
    def _env(self) -> dict[str, str]:
        env = self.settings.child_environment(self.wiring)
        env["PYTHONUNBUFFERED"] = "1"
        return package_path_env(env)

    def _remote_env(self) -> dict[str, str]:
        env = self.settings.child_environment(self.wiring, remote=True)
        env["PYTHONUNBUFFERED"] = "1"
        return package_path_env(env)

    def _start(self, host: str, role: str, args: list[str], capture: bool = False) -> Process:
        if self.is_local(host):
            extra = ["--lifeline"] if role == "client" else []
            # Forked, not started afresh, while this process has no threads yet (see LocalProcess).
            fork = threading.active_count() == 1 and sys.platform.startswith("linux")
            return LocalProcess([*python_m(role), *args, *extra], self._env(), capture, fork=fork)
        command = remote_command(self.settings, role, *args)
        if self.custom_ssh:
            return SshCommandProcess(self.settings.PSSSH, host, command, self._remote_env())
        return self.connections[host].start(command, self._remote_env(), sys.stdout.buffer, sys.stderr.buffer)

    def start_server(self) -> str:
        """Start the server side on PSMASTER and return its name server address once it listens."""
        master = self.master or "localhost"
        if self.is_local(master):
            bind = self._address_for_clients()
        elif master in self.connections:
            bind = self.connections[master].address
        else:
            bind = ssh_resolve(self.settings.PSSSH, master)
        args = ["--scheduler", "--run", self.run_id, "--host", bind, "--port", "0", "--ready"]
        self.server = self._start(master, "server", args, capture=True)
        line = self.server.readline(READY_TIMEOUT).strip()
        if not line.startswith("READY "):
            self.server.wait(2)
            detail = self.server.tail().strip().splitlines()[-1:] or ["see the messages above"]
            raise PastSetConnectionError(
                f"the PastSet server did not start on {master} (exit status {self.server.poll()}): "
                f"{detail[0]}; set PSLOGLEVEL=debug for more"
            )
        address = line.split()[1]
        self.wiring = replace(self.wiring, ns=address)
        try:
            uri = lookup(address, scheduler_name(self.run_id), self.wiring.secret)
        except Pyro5.errors.CommunicationError as err:
            host = address.rpartition(":")[0]
            advice = tls.hint(err, host) or "check PSMASTER and firewalls (see PYRO_* port settings)"
            raise PastSetConnectionError(
                f"the PastSet server on {master} listens at {address} but cannot be reached from here: {err}; {advice}"
            ) from None
        self.scheduler = self._scheduler_proxy(uri)
        log.debug("run %s: server ready at %s", self.run_id, address)
        for proc in self._early:
            proc.send_line(address)
        self._told = True
        return address

    def _scheduler_proxy(self, uri: Any) -> Any:
        return proxy(uri, self.wiring.secret)

    def _open_scheduler(self) -> Any:
        """A new proxy of this run's scheduler, for a thread of its own (Pyro5 proxies belong to one thread)."""
        return self._scheduler_proxy(self.scheduler._pyroUri)

    def start(self) -> str:
        """Start the server side and the clients; return the name server address once they are up.

        Local clients start together with the server and get its address on
        their lifeline once it listens, so their interpreter starts and imports
        overlap the server's; remote ones start once it is up.
        """
        self.connect_hosts()
        self.start_early_clients()
        address = self.start_server()
        self.start_clients()
        return address

    def start_early_clients(self) -> None:
        """Start the local clients now; they wait for the server's address (see :meth:`start`)."""
        if self.clients or self.launcher in ("srun", "pbsdsh"):
            return
        for number, host in enumerate(self.placement):
            if self.is_local(host):
                args = ["--run", self.run_id, "--number", str(number), "--ns-on-stdin"]
                proc = self._start(host, "client", args)
                assert isinstance(proc, LocalProcess)
                self._early.append(proc)
                self.clients.append(proc)

    def start_clients(self) -> None:
        """Start the clients on their hosts and wait for PSWAITPROCS of them to register."""
        log.info("clients on: %s", ", ".join(self.placement) or "(none)")
        if self.launcher in ("srun", "pbsdsh") and self.placement:
            self._start_batch_clients()
        elif not self._early:
            for number, host in enumerate(self.placement):
                self.clients.append(self._start(host, "client", ["--run", self.run_id, "--number", str(number)]))
                self.client_labels.append(f"client {number} on {host}")
        else:
            early = iter(self._early)
            ordered: list[Process] = []
            for number, host in enumerate(self.placement):
                if self.is_local(host):
                    ordered.append(next(early))
                else:
                    ordered.append(self._start(host, "client", ["--run", self.run_id, "--number", str(number)]))
                self.client_labels.append(f"client {number} on {host}")
            self.clients = ordered
        wanted = self.settings.PSWAITPROCS
        want = len(self.placement) if wanted is None else min(wanted, len(self.placement))
        if want <= 0:
            return
        failed = await_clients(self._open_scheduler, self.clients, self.client_labels, want)
        count = self.scheduler.wait_clients(want, 0)
        if count < want:
            raise PastSetConnectionError(
                f"only {count} of {want} clients registered: {'; '.join(failed) or 'timed out'}"
            )
        log.debug("run %s: %d clients registered", self.run_id, count)
        if self.launcher == "srun":
            threading.Thread(target=self._watch_nodes, name="slurm-nodes", daemon=True).start()

    def _watch_nodes(self) -> None:
        """Give up on the clients of a node SLURM drains or takes down, as on a dead host's."""
        nodes = list(dict.fromkeys(self.placement))
        interval = min(5.0, max(0.5, self.settings.PSDEADTIME / 2))
        try:
            with self._open_scheduler() as sched:
                while nodes and sched.wait_end(interval) is None:
                    for node, what in nodes_out(nodes).items():
                        reason = f"{what}: host down or taken out of the job"
                        log.warning("%s; its clients are given up on", what)
                        sched.node_gone(node, reason)
                        nodes.remove(node)
        except Pyro5.errors.CommunicationError:
            return  # the server has gone: the run ended

    def _client_python(self) -> list[str]:
        if self.settings.sources.get("PSPYTHON", "default") != "default":
            return shlex.split(self.settings.PSPYTHON)
        return [sys.executable]  # batch nodes share the software: the same interpreter as here

    def _start_batch_clients(self) -> None:
        """All clients through the batch system: one srun job step, or pbsdsh (no SSH)."""
        python = self._client_python()
        if self.launcher == "srun":
            client = [*python, "-m", MODULES["client"], "--run", self.run_id, "--lifeline"]
            argv = srun_argv(client, len(self.placement), len(self.slots), f"pastset-{self.run_id}")
            log.debug("starting the clients: %s", shlex.join(argv))
            self.clients.append(LocalProcess(argv, self._env()))
            self.client_labels.append(f"the srun step of {len(self.placement)} client(s)")
            return
        self.env_file = write_env_file(self._remote_env(), self.run_id)
        command = client_shell_command(python, ["--run", self.run_id], self.env_file)
        for argv in pbsdsh_commands(command, self.placement, self.slots):
            log.debug("starting clients: %s", shlex.join(argv))
            self.clients.append(LocalProcess(argv, self._env()))
            self.client_labels.append(f"pbsdsh {' '.join(argv[1:3]) if argv[1] == '-n' else '(every slot)'}")

    # ----------------------------------------------------------------- app
    def run_app(self) -> int:
        """Run the application here and return its exit status.

        While it runs, a stop from pypsmanage ends it (SIGTERM, then SIGKILL),
        and with PSPROGRESS a live line on a terminal's stderr shows progress.
        """
        if self.app is None:
            self.prestart_app()
        assert self.app is not None and self._go is not None
        try:
            os.write(self._go, f"{self.wiring.ns}\n".encode())
        except OSError:  # it died while waiting: its status says how
            pass
        os.close(self._go)
        self._go = None
        threading.Thread(target=watch_stop, args=(self._open_scheduler, self.app), daemon=True).start()
        watcher = threading.Thread(
            target=watch_health,
            args=(self._open_scheduler, self.app, self.settings, self.run_id, self._end_app),
            daemon=True,
        )
        watcher.start()
        progress = None
        if self.settings.PSPROGRESS and sys.stderr.isatty():
            shown = (self._open_scheduler, self.app, self.run_id, len(self.placement))
            progress = threading.Thread(target=show_progress, args=shown, daemon=True)
            progress.start()
        status = exit_status(self.app.wait())
        watcher.join(2)
        if progress is not None:
            progress.join(2)
        return status if self.verdict is None else self.verdict

    def _end_app(self, app: subprocess.Popen, verdict: int) -> None:
        """End the app because of what the run showed; ``verdict`` becomes pypsrun's exit status."""
        self.verdict = verdict
        end_process(app)

    def prestart_app(self) -> None:
        """Start the application's interpreter now, to run its code when :meth:`run_app` says go.

        Its start and its import of pastset overlap the server's and the
        clients' (:mod:`pastset.commands.app`); the code runs only once the
        clients are up, as when it was started after them.
        """
        if self.app_path is None or self.app is not None:
            return
        read, write = os.pipe()
        cmd = [*python_m("app"), "--go", str(read), str(self.app_path), *self.args]
        try:
            self.app = subprocess.Popen(cmd, env=self._env(), pass_fds=(read,))
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._go = write

    def on_interrupt(self, signum: int, frame: object) -> None:
        """SIGINT/SIGTERM: pass it on to the application, then insist."""
        self._interrupts += 1
        app = self.app
        if app is None or app.poll() is not None or self._go is not None:  # not started yet: stop starting
            raise KeyboardInterrupt
        if self._interrupts == 1:
            # From a terminal the app got the same Ctrl-C; from kill(1) it did not.
            def forward() -> None:
                try:
                    app.wait(0.3)
                except subprocess.TimeoutExpired:
                    app.send_signal(signal.SIGINT)

            threading.Thread(target=forward, daemon=True).start()
        else:
            app.kill()

    # ----------------------------------------------------------------- end
    def finish(self, quietly: bool) -> None:
        """End the run (waiting for quiet if ``quietly``), then stop every process."""
        if self.scheduler is not None and self.server is not None and self.server.poll() is None:
            try:
                with self._open_scheduler() as sched:
                    sched.finish(quietly, None)
                    self.keep_record(sched)
            except KeyboardInterrupt:
                log.warning("interrupted while waiting for running tasks; stopping them")
                self._end_now()
            except Pyro5.errors.CommunicationError as err:
                log.warning("could not end the run through the server: %s", err)
        self.shutdown()

    def keep_record(self, sched: Any) -> None:
        """Keep the ended run's record (for pypsmanage report) and write PSREPORT if it is set."""
        keep_run_record(sched, self.run_id, self.app_path, self.args, self.settings.PSREPORT)

    def _end_now(self) -> None:
        try:
            with self._open_scheduler() as sched:
                sched._pyroTimeout = 5
                sched.finish(False, None)
        except Pyro5.errors.CommunicationError:
            pass

    def shutdown(self) -> None:
        """Stop clients, then the server; bounded, escalating, nothing left behind."""
        if self.scheduler is not None:
            self.scheduler._pyroRelease()
            self.scheduler = None
        if self._go is not None:  # the run did not start: the waiting app ends at end of file
            os.close(self._go)
            self._go = None
            if self.app is not None:
                try:
                    self.app.wait(10)
                except subprocess.TimeoutExpired:
                    self.app.kill()
                    self.app.wait()
        if not self._told:  # early clients still wait for an address that will not come
            for proc in self._early:
                proc.close_stdin()
        stop_all(self.clients, self.server)
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()
        if self.env_file is not None:
            self.env_file.unlink(missing_ok=True)
            self.env_file = None
