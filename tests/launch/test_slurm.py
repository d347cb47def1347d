"""A real single-node SLURM runs pypsrun in a batch job with PSCONFHELP=slurm.

Needs root; ``tests/run`` installs slurm-wlm and munge (tests/infra/slurm-install.sh).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))

from conftest import EXAMPLES
from slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    with SlurmCluster() as cluster:
        yield cluster


def job_script(body: str) -> str:
    bindir = Path(sys.executable).parent
    return f"#!/bin/sh\nexport PATH={bindir}:$PATH\nexport PSLOGLEVEL=info\n{body}\n"


def test_sbatch_n2_runs_pi_with_the_slurm_helper(slurm, tmp_path):
    script = job_script(f"PSCONFHELP=slurm pypsrun {EXAMPLES / 'mcpiserver.py'} 2 20 20000")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    job = slurm.submit(script, "-n", "2", env=env, cwd=tmp_path)
    status = slurm.wait(job, timeout=120)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    match = re.search(r"Pi is found as (\d\.\d+) with 2 worker\(s\)", output)
    assert match, output
    assert abs(float(match.group(1)) - 3.14159) < 0.1
    assert re.search(r"clients on: (\S+), \1\n", output), output  # two clients, from SLURM_NTASKS


def test_example_sbatch_script_runs_as_shipped(slurm, tmp_path):
    shipped = (EXAMPLES / "pastset.sbatch").read_text()
    assert "srun" in shipped and "PSCONFHELP" not in shipped.split("#SBATCH --time")[1]  # srun, nothing configured
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PSBIN"] = str(EXAMPLES)
    job = slurm.submit(str(EXAMPLES / "pastset.sbatch"), env=env, cwd=tmp_path)
    status = slurm.wait(job, timeout=120)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    assert "Pi is found" in output


def test_psconfhelp_slurm_with_pslaunch_ssh_still_takes_the_job_nodes(slurm, tmp_path):
    # The ssh launcher with the job's node list: on a single node, every client is local (no ssh needed).
    script = job_script(f"PSLAUNCH=ssh PSCONFHELP=slurm pypsrun {EXAMPLES / 'mcpiserver.py'} 2 10 2000")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    job = slurm.submit(script, "-n", "2", env=env, cwd=tmp_path)
    status = slurm.wait(job, timeout=120)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    assert "clients start by ssh" in output and "Pi is found as" in output
