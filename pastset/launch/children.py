"""Starting the processes of a run: how a role is started on another host, and the wait for clients.

Every child's standard input is its lifeline — a pipe locally, the SSH channel
remotely — so if pypsrun dies, even by SIGKILL, its children see end of file
and stop.  A child on another host is started by a shell command
(:func:`remote_command`) that finds a Python with this pastset.  Readiness is
signalled, never guessed: clients count as up when the scheduler has their
registration (:func:`await_clients`), and a client that exits first is named
with its last line and a hint (:func:`exit_hint`).

These are the parts of starting a run's processes that need none of the run's
state; :class:`~pastset.launch.run.Run` does the rest, and
:mod:`pastset.launch.teardown` ends them.
"""

from __future__ import annotations

import logging
import os
import shlex
import site
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import Pyro5.errors

from pastset import __version__
from pastset.entrypoints import MODULES
from pastset.launch.deploy import deployed_python
from pastset.launch.ssh import RemoteProcess
from pastset.proc import LocalProcess, exit_status
from pastset.settings import Settings

__all__ = ["READY_TIMEOUT", "Process", "await_clients", "exit_hint", "package_path_env", "remote_command"]

log = logging.getLogger(__name__)

#: seconds the server has to say it listens, and the clients to register
READY_TIMEOUT = 30.0

#: a child of the run: a local process, or one on another host over SSH
Process = LocalProcess | RemoteProcess


def remote_command(settings: Settings, role: str, *args: str) -> str:
    """The shell command that starts a pastset ``role`` on another host.

    Unless PSPYTHON is set, the environment pypsdeploy made there for this
    pastset version is used if it exists, else the same interpreter path as
    here (clusters usually share home directories and software), else ``python3``.
    """
    tail = " ".join(shlex.quote(a) for a in ("-m", MODULES["remote"], role, *args))
    cd = f"cd {shlex.quote(os.getcwd())} 2>/dev/null || cd"
    here_env = settings.child_environment(remote=True)
    paths = package_path_env({k: here_env[k] for k in ("PATH", "PYTHONPATH") if k in here_env})
    if paths:  # search paths only (never secrets): the interpreter needs them before it starts
        cd += "; " + " ".join(f"{k}={shlex.quote(v)}" for k, v in paths.items()) + "; export " + " ".join(paths)
    if settings.sources.get("PSPYTHON", "default") != "default":
        return f"{cd}; exec {settings.PSPYTHON} {tail}"
    here = shlex.quote(sys.executable)
    deployed = deployed_python(__version__)
    return f'{cd}; p={deployed}; [ -x "$p" ] || p={here}; [ -x "$p" ] || p=python3; exec "$p" {tail}'


def package_path_env(env: dict[str, str]) -> dict[str, str]:
    """``env``, with PYTHONPATH led by this pastset's directory unless it is installed (changed in place)."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the pastset package
    if root not in [*site.getsitepackages(), site.getusersitepackages()]:
        # Running from a checkout (bin/ wrappers): children must import this pastset too.
        paths = [root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def await_clients(open_scheduler: Callable[[], Any], clients: list[Process], labels: list[str], want: int) -> list[str]:
    """Wait until ``want`` clients have registered, one of ``clients`` has exited, or time is up.

    ``open_scheduler`` gives a new proxy of the run's scheduler (one per
    thread); ``labels`` names each client.  Returns the failures seen: one line
    per client that exited (with its last line and a hint), or the server's
    error.  The list may still grow after the return, while the watchers run.
    """
    done = threading.Event()
    failed: list[str] = []

    def registered() -> None:
        with open_scheduler() as sched:
            try:
                sched.wait_clients(want, READY_TIMEOUT)
            except Pyro5.errors.CommunicationError as err:
                failed.append(f"server: {err}")
        done.set()

    def watch(number: int, proc: Process) -> None:
        code = proc.wait()
        if not done.is_set():
            detail = proc.tail().strip().splitlines()[-1:]
            hint = exit_hint(code, detail[0] if detail else "")
            failed.append(f"{labels[number]} exited with status {exit_status(code)}{hint}")
            done.set()

    threading.Thread(target=registered, daemon=True).start()
    for number, proc in enumerate(clients):
        threading.Thread(target=watch, args=(number, proc), daemon=True).start()
    done.wait(READY_TIMEOUT + 1)
    return failed


def exit_hint(code: int | None, last: str) -> str:
    """What a client's exit with ``code`` and last line ``last`` probably means, for its error message."""
    if code == 127 or "not found" in last:
        return f" ({last}): is Python 3 installed there? set PSPYTHON to its path"
    if "No module named" in last:
        return f" ({last}): install pastset on that host (pypsdeploy does), or set PSPYTHON to a Python that has it"
    return f" ({last})" if last else ""
