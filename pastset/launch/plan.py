"""A run's plan, made before anything starts: its identity, its wiring, where its clients go.

A :class:`~pastset.launch.run.Run` is built from what is decided here: a run id
unique on this machine, the application file (given, or found in PSBIN), the
run's :class:`~pastset.settings.Wiring` (its id, a fresh secret, the PSBIN its
processes search, which includes the application's folder), and the placement
of its clients: which launcher starts them (ssh, srun, pbsdsh or local) and on
which node each one runs.  All of it is plain values, computed without
starting a process or opening a connection, so it can be checked on its own.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from pastset.errors import AppNotFoundError
from pastset.launch.batch import choose_launcher, pbs_layout, slurm_layout
from pastset.launch.hosts import assign_clients, read_hosts_file
from pastset.psbin import closest_name, find_in_path
from pastset.settings import Settings, Wiring, batch_environment

__all__ = ["find_app", "new_run_id", "new_wiring", "place_clients"]


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
        close = closest_name(app, psbin)
        raise AppNotFoundError(
            f"application {app!r} not found as a file nor in PSBIN ({os.pathsep.join(psbin)})"
            + (f": did you mean {close}?" if close else "; give its path or set PSBIN to its directory")
        )
    return found


def new_wiring(run_id: str, psbin: list[str], app_path: Path | None) -> Wiring:
    """The wiring of run ``run_id``: a fresh secret, and PSBIN with the application's folder added.

    The secret is handed on by environment or SSH stdin only.
    """
    if app_path is not None and str(app_path.parent) not in psbin:
        psbin = [*psbin, str(app_path.parent)]  # an app's companions sit next to it
    return Wiring(run=run_id, secret=secrets.token_urlsafe(24), psbin=tuple(psbin))


def place_clients(settings: Settings) -> tuple[str, list[str], list[str]]:
    """How clients start and where: (launcher, the node of each client, the batch job's slots).

    Under srun or pbsdsh the batch job's layout decides (PSPROCS still counts
    when set); with ssh the hosts file does; otherwise every client is local.
    """
    env = batch_environment()
    launcher = choose_launcher(settings.PSLAUNCH, env)
    procs = None if settings.sources.get("PSPROCS", "default") == "default" else settings.PSPROCS
    if launcher == "srun":
        return launcher, slurm_layout(env, procs), slurm_layout(env)
    if launcher == "pbsdsh":
        return launcher, pbs_layout(env, procs), pbs_layout(env)
    if settings.PSHOSTS and launcher == "ssh":
        return launcher, assign_clients(read_hosts_file(settings.PSHOSTS), procs), []
    return launcher, ["localhost"] * settings.PSPROCS, []
