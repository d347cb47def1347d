"""Starting a run's clients through the batch system instead of SSH.

Inside a SLURM allocation all clients start as one job step, ``srun
--ntasks=N``, laid out by SLURM over the job's nodes; inside a PBS job they
start through ``pbsdsh``.  Either way no SSH connection is made, and the batch
system places, accounts for and cleans up the clients: ``scancel`` (or
``qdel``) of the job ends them on every node.  A client learns its number and
node from the batch system's environment (:func:`task_identity`).

:func:`choose_launcher` turns PSLAUNCH (``auto``, ``ssh``, ``srun``,
``pbsdsh``, ``local``) into the launcher a run uses; ``auto`` means srun in a
SLURM allocation, pbsdsh in a PBS job that has it, and ssh otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import hostlist

from pastset.entrypoints import MODULES
from pastset.errors import ConfigurationError

__all__ = [
    "LAUNCHERS",
    "choose_launcher",
    "node_address",
    "nodes_out",
    "pbs_layout",
    "pbsdsh_commands",
    "slurm_layout",
    "srun_argv",
    "task_identity",
    "write_env_file",
]

log = logging.getLogger(__name__)

#: The values PSLAUNCH takes.
LAUNCHERS = ("auto", "ssh", "srun", "pbsdsh", "local")


def in_slurm(env: Mapping[str, str]) -> bool:
    """True inside a SLURM allocation (sbatch, salloc)."""
    return bool(env.get("SLURM_JOB_ID") and env.get("SLURM_JOB_NODELIST"))


def in_pbs(env: Mapping[str, str]) -> bool:
    """True inside a PBS or Torque job."""
    return bool(env.get("PBS_JOBID") and env.get("PBS_NODEFILE"))


def choose_launcher(setting: str, env: Mapping[str, str], which: Callable[[str], str | None] = shutil.which) -> str:
    """The launcher PSLAUNCH=``setting`` means here: ``ssh``, ``srun``, ``pbsdsh`` or ``local``.

    ``auto`` picks srun in a SLURM allocation and pbsdsh in a PBS job (when the
    command is on PATH), else ssh.  Asking for srun or pbsdsh outside such a
    job is a configuration error that says so.
    """
    if setting == "auto":
        if in_slurm(env) and which("srun"):
            return "srun"
        if in_pbs(env) and which("pbsdsh"):
            return "pbsdsh"
        return "ssh"
    if setting == "srun":
        if not in_slurm(env):
            raise ConfigurationError(
                "PSLAUNCH=srun but this is not a SLURM allocation (SLURM_JOB_ID is not set); "
                "run pypsrun inside sbatch or salloc, or set PSLAUNCH=auto"
            )
        if not which("srun"):
            raise ConfigurationError("PSLAUNCH=srun but srun is not on PATH; add SLURM's bin directory to PATH")
    if setting == "pbsdsh":
        if not in_pbs(env):
            raise ConfigurationError(
                "PSLAUNCH=pbsdsh but this is not a PBS job (PBS_JOBID/PBS_NODEFILE are not set); "
                "run pypsrun inside qsub, or set PSLAUNCH=auto"
            )
        if not which("pbsdsh"):
            raise ConfigurationError(
                "PSLAUNCH=pbsdsh but pbsdsh is not on PATH; add PBS's bin directory to PATH or set PSLAUNCH=ssh"
            )
    return setting


def _spread(slots: list[str], procs: int | None) -> list[str]:
    if procs is None or procs == len(slots):
        return slots
    if procs > len(slots):
        log.warning("more clients (PSPROCS=%d) than the job's tasks (%d): wrapping around", procs, len(slots))
    return [slots[i % len(slots)] for i in range(procs)]  # fewer: the first ones, in blocks as srun does


def slurm_layout(env: Mapping[str, str], procs: int | None = None) -> list[str]:
    """The node of each client in a SLURM allocation, in task order.

    The job's tasks come from SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE
    (``2(x3),1``; heterogeneous counts and ``--ntasks-per-node`` are written
    this way), distributed in blocks as srun does.  ``procs`` (PSPROCS, when
    set) overrides the number of clients.
    """
    try:
        nodes = hostlist.expand_hostlist(env.get("SLURM_JOB_NODELIST", ""))
        text = env.get("SLURM_TASKS_PER_NODE", "")
        per_node = hostlist.parse_slurm_tasks_per_node(text) if text else [1] * len(nodes)
    except hostlist.BadHostlist as err:
        raise ConfigurationError(f"cannot read the SLURM node list or task layout: {err}") from None
    if not nodes or len(per_node) != len(nodes):
        raise ConfigurationError(
            f"SLURM_TASKS_PER_NODE={env.get('SLURM_TASKS_PER_NODE', '')!r} does not match the "
            f"{len(nodes)} node(s) of SLURM_JOB_NODELIST={env.get('SLURM_JOB_NODELIST', '')!r}"
        )
    slots = [node for node, count in zip(nodes, per_node, strict=True) for _ in range(count)]
    ntasks = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS")
    if ntasks and ntasks.isdigit() and 0 < int(ntasks) < len(slots):
        slots = slots[: int(ntasks)]  # srun -n N gives N tasks even if the nodes have more room
    return _spread(slots, procs)


def pbs_layout(env: Mapping[str, str], procs: int | None = None) -> list[str]:
    """The node of each client in a PBS job: PBS_NODEFILE has one line per slot."""
    path = env.get("PBS_NODEFILE", "")
    try:
        slots = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ConfigurationError(f"PBS_NODEFILE {path!r} cannot be read: {err.strerror}") from None
    if not slots:
        raise ConfigurationError(f"PBS_NODEFILE {path} is empty")
    return _spread(slots, procs)


def srun_argv(client: list[str], ntasks: int, allocated: int, job_name: str = "pastset-clients") -> list[str]:
    """The one srun command that starts ``ntasks`` clients as a job step.

    The step follows the job's own task layout.  One client failing does not
    end the others (``--kill-on-bad-exit=0``); standard input goes to every
    task and is their lifeline.  More clients than the job has tasks need
    ``--overcommit``.
    """
    argv = ["srun", f"--ntasks={ntasks}", "--kill-on-bad-exit=0", "--input=all", f"--job-name={job_name}"]
    if ntasks > allocated:
        argv.append("--overcommit")
    return [*argv, *client]


def pbsdsh_commands(command: str, placement: list[str], slots: list[str]) -> list[list[str]]:
    """The pbsdsh command line(s) that start a client on each place of ``placement``.

    When the clients fill the job's slots exactly, one ``pbsdsh`` starts them
    all (one per slot); otherwise one ``pbsdsh -n INDEX`` per client puts each
    on its slot.  ``command`` is a shell command run by ``/bin/sh -c``.
    """
    if placement == slots:
        return [["pbsdsh", "--", "/bin/sh", "-c", command]]
    argv = []
    used: dict[str, int] = {}
    for number, node in enumerate(placement):
        where = [i for i, slot in enumerate(slots) if slot == node]
        index = where[used.get(node, 0) % len(where)]
        used[node] = used.get(node, 0) + 1
        argv.append(["pbsdsh", "-n", str(index), "--", "/bin/sh", "-c", f"export PSCLIENTNUMBER={number}; {command}"])
    return argv


def write_env_file(env: Mapping[str, str], run_id: str, folder: Path | None = None) -> Path:
    """Write a run's environment for pbsdsh-started clients: JSON, readable by this user only.

    pbsdsh does not pass on the caller's environment and the secret must not
    appear on a command line, so clients read it from this file (on the job's
    shared home directory).  The run removes it when it ends.
    """
    folder = folder or Path.home() / ".pastset"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{run_id}.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(dict(env), out)
    return path


def client_shell_command(python: list[str], args: list[str], env_file: Path) -> str:
    """The shell command a pbsdsh task runs: the client, its environment read from ``env_file``."""
    tail = " ".join(shlex.quote(a) for a in [*python, "-m", MODULES["remote"], "client", "--env-file", str(env_file)])
    cd = f"cd {shlex.quote(os.getcwd())} 2>/dev/null || cd"
    return f"{cd}; exec {tail} {' '.join(shlex.quote(a) for a in args)}"


def task_identity(env: Mapping[str, str]) -> dict[str, str]:
    """This process's client number and node as the batch system tells them (empty outside one).

    SLURM sets SLURM_PROCID and SLURMD_NODENAME in every task of a step; a
    pbsdsh task has PBS_VNODENUM, or PSCLIENTNUMBER when started one by one.
    """
    if env.get("SLURM_PROCID") and env.get("SLURM_STEP_ID") is not None:
        found = {"number": env["SLURM_PROCID"]}
        if env.get("SLURMD_NODENAME"):
            found["node"] = env["SLURMD_NODENAME"]
        return found
    number = env.get("PSCLIENTNUMBER") or env.get("PBS_VNODENUM")
    if number is not None:
        return {"number": number, "node": socket.gethostname().split(".")[0]}
    return {}


#: SLURM node states (sinfo %T) in which a node no longer serves the job
_OUT_STATES = ("drain", "down", "fail", "maint", "reboot", "power")


def nodes_out(nodes: list[str]) -> dict[str, str]:
    """The nodes among ``nodes`` that SLURM drained or took down, each with a description.

    Asks ``sinfo`` once; if it cannot be asked, nothing is reported.
    """
    if not nodes:
        return {}
    argv = ["sinfo", "-h", "-N", "-n", hostlist.collect_hostlist(nodes), "-o", "%N|%T|%E"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in out.splitlines():
        node, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        if node in nodes and any(word in state.lower() for word in _OUT_STATES):
            found[node] = f"SLURM set node {node} {state.strip()} ({reason.strip() or 'no reason given'})"
    return found


def node_address(node: str) -> str:
    """An IPv4 address of batch node ``node``: its name if it resolves, else SLURM's NodeAddr."""
    try:
        return socket.gethostbyname(node)
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["scontrol", "-o", "show", "node", node], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for word in out.split():
        key, _, value = word.partition("=")
        if key == "NodeAddr" and value:
            try:
                return socket.gethostbyname(value)
            except OSError:
                break
    raise ConfigurationError(f"node {node}: cannot resolve its address (by name, nor NodeAddr of scontrol)")
