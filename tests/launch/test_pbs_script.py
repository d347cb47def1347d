"""examples/pastset.qsub under a simulated PBS job: PBS_NODEFILE, PBS_JOBID and PBS_O_WORKDIR set, no pbsdsh."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.timeout(180)


def test_the_qsub_script_runs_pi_over_the_slots_of_pbs_nodefile(tmp_path: Path) -> None:
    assert shutil.which("pypsrun"), "pypsrun must be on PATH (tests/run puts the test venv's bin first)"
    nodefile = tmp_path / "nodefile"
    nodefile.write_text(f"{socket.gethostname()}\n" * 3)  # one line per slot: three slots on this machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PBS_NODEFILE=str(nodefile), PBS_JOBID=f"{os.getpid()}.test", PBS_O_WORKDIR=str(ROOT))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "pbsdsh").exists())
    done = subprocess.run(
        ["sh", str(ROOT / "examples" / "pastset.qsub")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pi is found as 3.1" in done.stdout and "with 3 worker(s), 20 bag(s)" in done.stdout, done.stdout
