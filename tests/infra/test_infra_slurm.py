"""Tests for the throw-away single-node SLURM cluster (tests/infra/slurm_cluster.py).

Run (as root, after ``sh tests/infra/slurm-install.sh``)::

    python -m pytest -v -s tests/infra/test_infra_slurm.py
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import (
    SlurmCluster,
    SlurmError,
    find_stray_processes,
    netns_cluster,
    slurm_available,
)

_REASON = slurm_available()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]

JOB_SCRIPT = """#!/bin/sh
echo "NODELIST=$SLURM_JOB_NODELIST"
echo "NTASKS=$SLURM_NTASKS"
echo "TASKS_PER_NODE=$SLURM_TASKS_PER_NODE"
echo "HOSTNAME=$(hostname)"
echo "MARKER=$PASTSET_TEST_MARKER"
"""


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _descendants(pid: int) -> list[int]:
    """Pids of all live descendants of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return [p for p in found if _alive(p)]


def _start_sleeper(cluster: SlurmCluster) -> tuple[list[int], list[int]]:
    """Submit a long job, wait until it runs; return (slurmstepd pids, job pids).

    slurmctld reports RUNNING as soon as it sends the launch request, so poll
    until slurmstepd and the batch script under it actually exist.
    """
    job_id = cluster.submit("sleep 300\n")
    deadline = time.monotonic() + 10
    while True:
        if cluster.job_state(job_id) == "RUNNING":
            steps = [p.pid for p in find_stray_processes(cluster.root) if p.name == "slurmstepd"]
            job_pids = [d for s in steps for d in _descendants(s)]
            if steps and job_pids:
                return steps, job_pids
        assert time.monotonic() < deadline, "job did not start"
        time.sleep(0.05)


def _parse_output(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """One cluster shared by the tests of this module."""
    cluster = SlurmCluster()
    with cluster:
        print(f"\n[slurm] set-up {cluster.startup_seconds:.2f}s ({cluster.root})")
        yield cluster
    print(f"\n[slurm] tear-down {cluster.shutdown_seconds:.2f}s")
    assert not cluster.problems, cluster.problems


def test_cluster_comes_up(slurm: SlurmCluster) -> None:
    assert slurm.node_state() == "IDLE"
    ping = slurm.run("scontrol", "ping")
    assert "is UP" in ping.stdout
    cpus = slurm.node_info()["CPUTot"]
    assert int(cpus) == os.cpu_count()
    sinfo = slurm.run("sinfo", "-h", "-o", "%P %t %D %N")
    assert sinfo.stdout.split() == ["debug*", "idle", "1", slurm.node_name]
    # SLURM_CONF is exported for code under test while the cluster runs
    assert os.environ["SLURM_CONF"] == str(slurm.conf_path)
    assert slurm.env["SLURM_CONF"] == str(slurm.conf_path)


def test_sbatch_two_tasks(slurm: SlurmCluster) -> None:
    t0 = time.monotonic()
    job_id = slurm.submit(JOB_SCRIPT, "-n", "2", env={"PASTSET_TEST_MARKER": "xyzzy"})
    state, exit_code = slurm.wait(job_id, timeout=30)
    elapsed = time.monotonic() - t0
    print(f"\n[slurm] job {job_id}: {state} exit={exit_code} in {elapsed:.2f}s")
    assert (state, exit_code) == ("COMPLETED", 0), slurm.log("slurmd")[-3000:]
    assert elapsed < 10, f"batch job took {elapsed:.1f}s"

    out_path = slurm.output_path(job_id)
    assert out_path == slurm.job_dir / f"slurm-{job_id}.out"
    out = _parse_output(slurm.read_output(job_id))
    assert out == {
        "NODELIST": slurm.node_name,
        "NTASKS": "2",
        "TASKS_PER_NODE": "2",
        "HOSTNAME": socket.gethostname(),
        "MARKER": "xyzzy",
    }


def test_script_file_and_failure_exit_code(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho failing\nexit 3\n")
    out = tmp_path / "fail.out"
    job_id = slurm.submit(script, "-o", str(out))
    assert slurm.wait(job_id, timeout=30) == ("FAILED", 3)
    assert slurm.output_path(job_id) == out
    assert out.read_text() == "failing\n"


def test_bad_script_is_rejected(slurm: SlurmCluster) -> None:
    with pytest.raises(SlurmError, match="sbatch"):
        slurm.submit("echo hi\n", "--partition=nope")


def test_lifecycle_teardown_leaves_nothing() -> None:
    """Fresh cluster, a job still running at exit: nothing of ours survives."""
    before = os.environ.get("SLURM_CONF")
    cluster = SlurmCluster()
    t0 = time.monotonic()
    with cluster:
        setup = time.monotonic() - t0
        root = cluster.root
        pids = cluster.pids()
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
        steps, job_pids = _start_sleeper(cluster)
        t1 = time.monotonic()
    teardown = time.monotonic() - t1
    print(
        f"\n[slurm] set-up {setup:.2f}s, tear-down {teardown:.2f}s "
        f"(stop(): {cluster.shutdown_seconds:.2f}s) problems={cluster.problems}"
    )
    assert not cluster.problems, cluster.problems
    assert not [n for n, pid in pids.items() if _alive(pid)]
    assert not [p for p in steps + job_pids if _alive(p)]
    assert find_stray_processes(root) == []
    assert not root.exists()
    assert os.environ.get("SLURM_CONF") == before
    assert teardown < 10


def test_teardown_after_controller_crash() -> None:
    """slurmctld dies with a job running: stop() still ends the job step by pid."""
    with SlurmCluster() as cluster:
        root = cluster.root
        pids = cluster.pids()
        steps, job_pids = _start_sleeper(cluster)
        ctld = dict(cluster.processes())["slurmctld"]
        ctld.kill()  # our own child, by pid
        ctld.wait(timeout=10)
    print(f"\n[slurm] tear-down after crash {cluster.shutdown_seconds:.2f}s: {cluster.problems}")
    assert any("left-over job step" in p for p in cluster.problems)
    assert not [p for p in [*pids.values(), *steps, *job_pids] if _alive(p)]
    assert find_stray_processes(root) == []
    assert not root.exists()


def test_teardown_on_exception() -> None:
    cluster = SlurmCluster()
    with pytest.raises(RuntimeError, match="boom"), cluster:
        root = cluster.root
        pids = cluster.pids()
        raise RuntimeError("boom")
    assert not [n for n, pid in pids.items() if _alive(pid)]
    assert find_stray_processes(root) == []
    assert not root.exists()


def test_failed_start_cleans_up() -> None:
    cluster = SlurmCluster(extra_conf="SelectType=select/does_not_exist", startup_timeout=15)
    with pytest.raises(SlurmError, match="slurmctld exited") as info:
        cluster.start()
    print(f"\n[slurm] start-up failure reported as: {str(info.value).splitlines()[0]}")
    assert cluster.pids() == {}
    assert cluster.last_root is not None
    assert find_stray_processes(cluster.last_root) == []
    assert not cluster.last_root.exists()


def test_only_the_cluster_s_own_daemons_run_under_its_root(slurm: SlurmCluster) -> None:
    """Every process that names this cluster's directory is a daemon it manages or one they forked.

    Only this cluster's own directory is looked at: other test clusters on the
    machine (another suite running at the same time) are not ours to judge.
    """
    managed = set(slurm.pids().values())
    ours = find_stray_processes(slurm.root)
    assert managed <= {p.pid for p in ours}
    assert [p for p in ours if p.pid not in managed and p.ppid not in managed] == []


# ---------------------------------------------------------------- 3 nodes in network namespaces


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout.strip()
    return {ns["name"] for ns in json.loads(out)} if out else set()


def test_three_netns_nodes_come_up_and_leave_nothing_even_when_the_block_fails(tmp_path: Path) -> None:
    class BoomError(Exception):
        pass

    started = time.monotonic()
    with pytest.raises(BoomError), netns_cluster(3, "srt") as cluster:
        up = time.monotonic() - started
        root, hosts = cluster.root, list(cluster.hosts)
        assert cluster.node_names == ["srt-h1", "srt-h2", "srt-h3"]
        assert [cluster.node_state(n) for n in cluster.node_names] == ["IDLE"] * 3
        assert {h.netns for h in hosts} <= _netns_names()
        # one job over the three nodes: each task on its own host, with that host's name
        script = "#!/bin/sh\nsrun -l hostname\nsrun sleep 300\n"
        job = cluster.submit(script, "-N", "3", "-n", "3", cwd=tmp_path)

        def sleeping() -> list[int]:
            return [
                pid
                for h in hosts
                for pid in map(
                    int, subprocess.run(["ip", "netns", "pids", h.netns], capture_output=True, text=True).stdout.split()
                )
                if Path(f"/proc/{pid}/comm").exists()
                and Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
                and pid != h.pid
            ]

        deadline = time.monotonic() + 30
        while len(sleeping()) < 3:
            assert time.monotonic() < deadline, cluster.read_output(job)
            time.sleep(0.05)
        # (srun may also report that it waited for the first step's resources)
        tasks = re.findall(r"^(\d): (\S+)$", cluster.read_output(job), re.M)
        assert sorted(tasks) == [("0", "srt-h1"), ("1", "srt-h2"), ("2", "srt-h3")], cluster.read_output(job)
        job_pids = sleeping()
        ended = time.monotonic()
        raise BoomError
    down = time.monotonic() - ended
    print(f"\n[slurm netns] 3 nodes up in {up:.2f}s, down in {down:.2f}s")
    assert not root.exists()
    assert not [p for p in find_stray_processes(root)]
    assert not [p for p in job_pids if _alive(p)]
    assert not {h.netns for h in hosts} & _netns_names()
    assert not [
        line
        for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
        if " srt-" in line
    ]
