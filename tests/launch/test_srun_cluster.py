"""pypsrun in batch jobs of a real 3-node SLURM, clients started by srun, no sshd anywhere.

The nodes are network-namespace hosts (tests/infra/netns_hosts.py, with no
sshd), each running its own slurmd; slurmctld and munged run here
(tests/infra/slurm_cluster.py).  Needs root and slurm-wlm + munge
(tests/infra/slurm-install.sh).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))

from conftest import EXAMPLES
from slurm_cluster import SlurmCluster, netns_cluster

from pastset.proc import processes_of_run

pytestmark = [pytest.mark.slurm, pytest.mark.netns, pytest.mark.timeout(240)]

NODES = {"srn-h1", "srn-h2", "srn-h3"}
BIN = Path(sys.executable).parent

#: An app that records the registered client specs, as pypsmanage shows them, then runs the pi example.
SPECS_THEN_PI = f"""
import os, runpy, subprocess, sys
out = subprocess.run(["pypsmanage", "clients", "--json", "--ns", os.environ["PSNS"], "--run", os.environ["PSRUN"]],
                     capture_output=True, text=True, check=True).stdout
open(sys.argv[1], "w").write(out)
sys.argv = [sys.argv[0], *sys.argv[2:]]
runpy.run_path({str(EXAMPLES / "mcpiserver.py")!r}, run_name="__main__")
"""


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    with netns_cluster(3, "srn") as cluster:
        yield cluster


@pytest.fixture
def job_env(tmp_path: Path) -> dict[str, str]:
    """The submission environment: the test's Python on PATH, run files private to the test, no PS* settings."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PATH=f"{BIN}:{env['PATH']}", XDG_RUNTIME_DIR=str(runtime), PSBIN=str(EXAMPLES), PSLOGLEVEL="info")
    return env


def wait_for(what: str, probe: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll ``probe`` until it returns something true (bounded)."""
    until = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def manage(env: dict[str, str], *args: str) -> list[dict] | None:
    """``pypsmanage ARGS --json`` against the only live run of this test (None while there is none)."""
    r = subprocess.run(["pypsmanage", *args, "--json"], capture_output=True, text=True, env=env, timeout=30)
    return json.loads(r.stdout) if r.returncode == 0 else None


def live_run(env: dict[str, str]) -> str | None:
    rows = manage(env, "runs") or []
    live = [r["run"] for r in rows if r.get("alive")]
    return live[0] if live else None


def netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def test_the_nodes_run_no_sshd(slurm):
    for host in slurm.hosts:
        listening = subprocess.run(
            ["ip", "netns", "exec", host.netns, "ss", "-Hltn"], capture_output=True, text=True, check=True
        ).stdout
        assert not re.search(r":22\s", listening), listening
        assert slurm.node_state(host.name) == "IDLE"


def test_sbatch_n3_runs_pi_with_300_bags_on_three_nodes(slurm, job_env, tmp_path):
    app = tmp_path / "specs_then_pi.py"
    app.write_text(SPECS_THEN_PI)
    specs = tmp_path / "clients.json"
    script = f"#!/bin/sh\npypsrun {app} {specs} 3 300 2000\n"
    job = slurm.submit(script, "-N", "3", "-n", "3", env=job_env, cwd=tmp_path)
    status = slurm.wait(job, timeout=180)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    assert "clients start by srun" in output
    match = re.search(r"Pi is found as (\d\.\d+) with 3 worker\(s\), 300 bag\(s\)", output)
    assert match, output
    assert abs(float(match.group(1)) - 3.14159) < 0.05
    clients = json.loads(specs.read_text())
    assert len(clients) == 3, clients
    assert {c["node"] for c in clients} == NODES, clients
    assert {c["host"] for c in clients} == NODES, clients
    assert sorted(c["number"] for c in clients) == ["0", "1", "2"], clients  # from SLURM_PROCID
    # Client output arrives whole: every log line of a client is one complete line.
    client_lines = [line for line in output.splitlines() if "pypsclient[" in line]
    assert len(client_lines) >= 3, output
    for line in client_lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} pypsclient\[\d\] \w+ .+", line), line


def test_the_shipped_sbatch_script_runs_pi_across_three_nodes_with_srun(slurm, job_env, tmp_path):
    job_env.pop("PSLOGLEVEL")
    job = slurm.submit(str(EXAMPLES / "pastset.sbatch"), "-N", "3", "-n", "3", env=job_env, cwd=tmp_path)
    status = slurm.wait(job, timeout=180)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    assert re.search(r"Pi is found as 3\.1\d+ with 3 worker\(s\), 20 bag\(s\)", output), output


def test_the_pypsitems_sbatch_script_processes_every_file_once_on_three_nodes(slurm, job_env, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):
        (data / f"f{i}.txt").write_text("x" * i)
    job_env["PSRESULTS"] = str(tmp_path / "results")
    job = slurm.submit(
        str(EXAMPLES / "pastset-items.sbatch"), "-N", "3", "-n", "3", env=job_env, cwd=tmp_path, script_args=[str(data)]
    )
    status = slurm.wait(job, timeout=180)
    output = slurm.read_output(job)
    assert (status.state, status.exit_code) == ("COMPLETED", 0), output
    assert "30 items, 3 workers, in place" in output and "30 done, 0 failed" in output, output
    (folder,) = (tmp_path / "results").iterdir()
    found = [json.loads(p.read_text()) for p in (folder / "results").glob("*.json")]
    assert sorted(Path(r["item"]).name for r in found) == sorted(f"f{i}.txt" for i in range(30))
    for r in found:
        assert r["status"] == 0 and r["stdout"].split()[0] == Path(r["item"]).name[1:-4]
    assert {r["host"] for r in found} <= NODES, found


def start_long_pi(slurm: SlurmCluster, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Submit a pi run that lasts far longer than the test; return (job id, run id) once 3 clients work."""
    script = "#!/bin/sh\npypsrun mcpiserver.py 3 1000 20000000\n"
    job = slurm.submit(script, "-N", "3", "-n", "3", env=env, cwd=cwd)
    run = str(wait_for("the run to start", lambda: live_run(env)))

    def three_busy() -> bool:
        clients = manage(env, "clients", "--run", run) or []
        return len([c for c in clients if c["alive"] and c["running"]]) == 3

    wait_for("three clients running tasks", three_busy)
    return job, run


def test_scancel_leaves_no_pastset_process_on_any_node(slurm, job_env, tmp_path):
    job, run = start_long_pi(slurm, job_env, tmp_path)
    before = processes_of_run(run)  # the run's own identity: --run RUN or PSRUN=RUN
    spaces = {netns_of(pid) for pid in before}
    assert len(spaces) == 3, before  # server, clients and tasks on all three nodes
    slurm.run("scancel", str(job))
    assert slurm.wait(job, timeout=60).state == "CANCELLED"
    # SLURM lists a job until its processes on every node are gone (state COMPLETING),
    # so once it is no longer listed nothing of it may be left: no polling after that.
    wait_for("SLURM to finish the job", lambda: not slurm.run("squeue", "-h", "-j", str(job)).stdout.strip())
    assert processes_of_run(run) == []


def test_a_node_drained_during_the_job_is_reported_like_a_dead_host(slurm, job_env, tmp_path):
    job, run = start_long_pi(slurm, job_env, tmp_path)
    try:
        slurm.run("scontrol", "update", "NodeName=srn-h3", "State=DRAIN", "Reason=disk failing")

        def given_up() -> list[dict] | None:
            clients = manage(job_env, "clients", "--run", run) or []
            return [c for c in clients if not c["alive"]] or None

        gone = wait_for("the client on srn-h3 to be given up", given_up)
        assert [c["node"] for c in gone] == ["srn-h3"], gone
        assert "drain" in gone[0]["gone_reason"].lower() and "disk failing" in gone[0]["gone_reason"], gone
        assert "host down" in gone[0]["gone_reason"], gone
        alive = [c for c in manage(job_env, "clients", "--run", run) or [] if c["alive"]]
        assert {c["node"] for c in alive} == {"srn-h1", "srn-h2"}
        h3 = netns_of(slurm.hosts[2]._proc.pid)
        wait_for("the client on srn-h3 to stop", lambda: not [p for p in processes_of_run(run) if netns_of(p) == h3])
        output = slurm.read_output(job)
        assert re.search(r"SLURM set node srn-h3 drain\w* \(disk failing\); its clients are given up", output), output
    finally:
        slurm.run("scancel", str(job), check=False)
        slurm.wait(job, timeout=60)
        slurm.run("scontrol", "update", "NodeName=srn-h3", "State=RESUME")
