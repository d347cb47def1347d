"""Launching through the batch system (pastset.launch.batch): the choice, task layouts, command lines.

The srun path runs for real in tests/launch/test_srun_cluster.py.  No PBS can
be installed here: the pbsdsh command lines are checked as text, and once run
by a stand-in ``pbsdsh`` that starts them on this machine the way pbsdsh
starts them on a job's nodes (one per slot, without the caller's environment).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES

from pastset.errors import ConfigurationError
from pastset.launch.batch import (
    choose_launcher,
    client_shell_command,
    pbs_layout,
    pbsdsh_commands,
    slurm_layout,
    srun_argv,
    task_identity,
    write_env_file,
)
from pastset.settings import Settings

SLURM = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-4]"}
PBS = {"PBS_JOBID": "9.head", "PBS_NODEFILE": "/nonexistent"}


def has(*names: str):
    return lambda name: f"/usr/bin/{name}" if name in names else None


@pytest.mark.parametrize(
    ("setting", "env", "tools", "chosen"),
    [
        ("auto", SLURM, ("srun",), "srun"),
        ("auto", SLURM, (), "ssh"),  # an allocation without srun on PATH
        ("auto", PBS, ("pbsdsh",), "pbsdsh"),
        ("auto", PBS, ("srun",), "ssh"),  # PBS without pbsdsh: PSCONFHELP=pbs with ssh
        ("auto", {}, ("srun", "pbsdsh"), "ssh"),  # srun installed, but not in a job
        ("ssh", SLURM, ("srun",), "ssh"),
        ("local", SLURM, ("srun",), "local"),
        ("srun", SLURM, ("srun",), "srun"),
    ],
)
def test_the_launcher_auto_and_explicit(setting, env, tools, chosen):
    assert choose_launcher(setting, env, has(*tools)) == chosen


def test_srun_outside_an_allocation_says_how_to_fix_it():
    with pytest.raises(ConfigurationError, match="not a SLURM allocation.*sbatch or salloc"):
        choose_launcher("srun", {}, has("srun"))
    with pytest.raises(ConfigurationError, match="srun is not on PATH"):
        choose_launcher("srun", SLURM, has())
    with pytest.raises(ConfigurationError, match="not a PBS job"):
        choose_launcher("pbsdsh", SLURM, has("pbsdsh"))


def test_pslaunch_is_a_setting_listed_by_h_and_checked():
    settings = Settings.load({"PSLAUNCH": "SRUN"}, files=[])
    assert settings.PSLAUNCH == "srun"
    assert "PSLAUNCH" in settings.describe() and "srun" in settings.describe()
    bad = Settings.load({"PSLAUNCH": "mpirun"}, files=[])
    assert bad.PSLAUNCH == "auto"
    assert any("PSLAUNCH='mpirun'" in p and "auto, ssh, srun, pbsdsh or local" in p for p in bad.problems)


@pytest.mark.parametrize(
    ("nodes", "per_node", "ntasks", "expected"),
    [
        ("n[1-4]", "2(x3),1", "7", ["n1", "n1", "n2", "n2", "n3", "n3", "n4"]),
        ("a,b[1-2]", "3,1,2", "6", ["a", "a", "a", "b1", "b2", "b2"]),  # heterogeneous nodes
        ("n[1-3]", "2(x3)", "6", ["n1", "n1", "n2", "n2", "n3", "n3"]),  # --ntasks-per-node=2
        ("n[1-3]", "1(x3)", "3", ["n1", "n2", "n3"]),  # sbatch -N 3 -n 3
        ("n1", "", "", ["n1"]),
    ],
)
def test_slurm_task_layouts(nodes, per_node, ntasks, expected):
    env = {"SLURM_JOB_NODELIST": nodes, "SLURM_TASKS_PER_NODE": per_node, "SLURM_NTASKS": ntasks}
    assert slurm_layout(env) == expected


def test_psprocs_is_still_honoured_under_srun():
    env = {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_NTASKS": "4"}
    assert slurm_layout(env, 2) == ["n1", "n1"]
    assert slurm_layout(env, 6) == ["n1", "n1", "n2", "n2", "n1", "n1"]
    assert srun_argv(["c"], 6, 4)[:2] == ["srun", "--ntasks=6"] and "--overcommit" in srun_argv(["c"], 6, 4)
    assert "--overcommit" not in srun_argv(["c"], 2, 4)


def test_a_layout_that_does_not_match_the_nodes_is_reported():
    env = {"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2(x2)"}
    with pytest.raises(ConfigurationError, match=r"does not match the 3 node\(s\)"):
        slurm_layout(env)


def test_the_srun_command_is_one_step_with_stdin_to_every_task():
    argv = srun_argv(["/py", "-m", "pastset.commands.client", "--run", "r1"], 3, 3, "pastset-r1")
    assert argv == [
        "srun",
        "--ntasks=3",
        "--kill-on-bad-exit=0",
        "--input=all",
        "--job-name=pastset-r1",
        "/py",
        "-m",
        "pastset.commands.client",
        "--run",
        "r1",
    ]


def test_task_identity_from_slurm_and_pbs():
    assert task_identity({"SLURM_PROCID": "2", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": "n3"}) == {
        "number": "2",
        "node": "n3",
    }
    assert task_identity({"PBS_VNODENUM": "5"})["number"] == "5"
    assert task_identity({"PBS_VNODENUM": "5", "PSCLIENTNUMBER": "1"})["number"] == "1"
    assert task_identity({}) == {}


def test_pbsdsh_command_lines(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\n")
    env = {"PBS_NODEFILE": str(nodefile)}
    slots = pbs_layout(env)
    assert slots == ["n1", "n1", "n2"]
    # the clients fill the slots: one pbsdsh starts one per slot
    assert pbsdsh_commands("CMD", slots, slots) == [["pbsdsh", "--", "/bin/sh", "-c", "CMD"]]
    # PSPROCS=4: one pbsdsh -n INDEX per client, wrapping around the slots
    placement = pbs_layout(env, 4)
    assert placement == ["n1", "n1", "n2", "n1"]
    lines = pbsdsh_commands("CMD", placement, slots)
    assert [line[2] for line in lines] == ["0", "1", "2", "0"] and {line[1] for line in lines} == {"-n"}
    assert lines[3][-1] == "export PSCLIENTNUMBER=3; CMD"
    command = client_shell_command(["/opt/py"], ["--run", "r1"], tmp_path / "r1.env")
    assert command.endswith(f"exec /opt/py -m pastset.commands.remote client --env-file {tmp_path / 'r1.env'} --run r1")


def test_the_env_file_for_pbsdsh_is_private(tmp_path):
    path = write_env_file({"PSSECRET": "s3cret", "PSRUN": "r1"}, "r1", tmp_path / "f")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["PSSECRET"] == "s3cret"


#: Runs the command as pbsdsh runs it on a job's nodes, but here: once per line of
#: PBS_NODEFILE with PBS_VNODENUM set (or once, for -n INDEX), without the caller's environment.
FAKE_PBSDSH = """#!/bin/sh
echo "pbsdsh $*" >> "$PBSDSH_LOG"
if [ "$1" = "-n" ]; then
    n=$2; shift 2; [ "$1" = "--" ] && shift
    exec env -i HOME="$HOME" PATH="$PATH" PBS_VNODENUM="$n" "$@"
fi
[ "$1" = "--" ] && shift
i=0
while read -r node; do
    env -i HOME="$HOME" PATH="$PATH" PBS_VNODENUM="$i" "$@" &
    i=$((i + 1))
done < "$PBS_NODEFILE"
wait
"""


@pytest.mark.timeout(120)
def test_pbsdsh_command_line_runs_a_whole_run_with_a_stand_in(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pbsdsh").write_text(FAKE_PBSDSH)
    (bindir / "pbsdsh").chmod(0o755)
    nodefile = tmp_path / "nodes"
    nodefile.write_text("localhost\nlocalhost\n")
    log = tmp_path / "pbsdsh.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS", "SLURM_"))}
    env.update(
        PATH=f"{bindir}:{Path(sys.executable).parent}:{env['PATH']}",
        HOME=str(tmp_path),
        PBS_JOBID="9.head",
        PBS_NODEFILE=str(nodefile),
        PBSDSH_LOG=str(log),
        PSBIN=str(EXAMPLES),
        PSLOGLEVEL="info",
    )
    r = subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", "mcpiserver.py", "2", "10", "1000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
    )
    assert r.returncode == 0, r.stderr
    assert "Pi is found as" in r.stdout
    assert "clients start by pbsdsh" in r.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and re.match(
        r"pbsdsh -- /bin/sh -c cd .*-m pastset\.commands\.remote client --env-file", calls[0]
    )
    assert not list((tmp_path / ".pastset").glob("*.env"))  # the run removed its environment file
