"""Built-in PSCONFHELP helpers: hand a batch system's node list to the run.

``PSCONFHELP=slurm`` reads SLURM_JOB_NODELIST (a hostlist expression such as
``node[01-04,07]``), SLURM_TASKS_PER_NODE (``2(x3),1``) and SLURM_NTASKS;
``PSCONFHELP=pbs`` reads PBS_NODEFILE (one line per slot).  Each writes a hosts
file with slot counts, sets PSHOSTS to it, and sets PSPROCS to the number of
tasks the job was given, unless PSHOSTS/PSPROCS were set explicitly.  A path
in PSCONFHELP still runs that script, as in pyPastSet.
"""

from __future__ import annotations

import collections
import os
import tempfile
from collections.abc import Callable, MutableMapping
from pathlib import Path

import hostlist

from pastset.errors import ConfigurationError

__all__ = ["BUILTIN", "pbs", "slurm"]


def _hosts_file(kind: str, job: str, counts: list[tuple[str, int]]) -> str:
    folder = Path(tempfile.gettempdir()) / f"pastset-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{kind}-{job or os.getpid()}.hosts"
    path.write_text("".join(f"{host} slots={n}\n" for host, n in counts))
    return str(path)


def _need(env: MutableMapping[str, str], name: str, kind: str) -> str:
    value = env.get(name, "")
    if not value:
        raise ConfigurationError(
            f"PSCONFHELP={kind}: {name} is not set; run inside a {kind.upper()} job "
            f"(sbatch/salloc/qsub) or unset PSCONFHELP"
        )
    return value


def slurm(env: MutableMapping[str, str]) -> None:
    """Set PSHOSTS/PSPROCS from a SLURM allocation."""
    try:
        nodes = hostlist.expand_hostlist(_need(env, "SLURM_JOB_NODELIST", "slurm"))
        per_node_text = env.get("SLURM_TASKS_PER_NODE", "")
        per_node = hostlist.parse_slurm_tasks_per_node(per_node_text) if per_node_text else [1] * len(nodes)
    except hostlist.BadHostlist as err:
        raise ConfigurationError(f"PSCONFHELP=slurm: cannot read the SLURM node list: {err}") from None
    if len(per_node) != len(nodes):
        raise ConfigurationError(
            f"PSCONFHELP=slurm: SLURM_TASKS_PER_NODE={per_node_text!r} does not match "
            f"{len(nodes)} node(s) in SLURM_JOB_NODELIST"
        )
    counts = list(zip(nodes, per_node, strict=True))
    env.setdefault("PSHOSTS", _hosts_file("slurm", env.get("SLURM_JOB_ID", ""), counts))
    ntasks = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS") or str(sum(per_node))
    env.setdefault("PSPROCS", ntasks)


def pbs(env: MutableMapping[str, str]) -> None:
    """Set PSHOSTS/PSPROCS from a PBS/Torque node file (one line per slot)."""
    path = _need(env, "PBS_NODEFILE", "pbs")
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ConfigurationError(f"PSCONFHELP=pbs: PBS_NODEFILE {path!r} cannot be read: {err.strerror}") from None
    if not lines:
        raise ConfigurationError(f"PSCONFHELP=pbs: PBS_NODEFILE {path} is empty")
    counts = list(collections.Counter(lines).items())
    env.setdefault("PSHOSTS", _hosts_file("pbs", env.get("PBS_JOBID", ""), counts))
    env.setdefault("PSPROCS", str(len(lines)))


BUILTIN: dict[str, Callable[[MutableMapping[str, str]], None]] = {"slurm": slurm, "pbs": pbs}
