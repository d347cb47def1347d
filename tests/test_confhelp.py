"""The built-in PSCONFHELP helpers: a SLURM allocation or a PBS node file becomes PSHOSTS and PSPROCS.

The hosts file goes to the temporary directory, which each test points at its
own tmp_path.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from pastset.confhelp import BUILTIN, pbs, slurm
from pastset.errors import ConfigurationError


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_helpers_are_known_by_name() -> None:
    assert BUILTIN == {"slurm": slurm, "pbs": pbs}


def test_slurm_nodes_and_tasks_per_node_become_a_hosts_file_with_slots(private_tmp: Path) -> None:
    env = {"SLURM_JOB_NODELIST": "node[01-02,07]", "SLURM_TASKS_PER_NODE": "2(x2),1", "SLURM_JOB_ID": "42"}
    slurm(env)
    path = Path(env["PSHOSTS"])
    assert path == private_tmp / f"pastset-{os.getuid()}" / "slurm-42.hosts"
    assert path.read_text() == "node01 slots=2\nnode02 slots=2\nnode07 slots=1\n"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert env["PSPROCS"] == "5", "the tasks of all nodes"


def test_slurm_ntasks_counts_before_the_slots_and_explicit_settings_win() -> None:
    env = {"SLURM_JOB_NODELIST": "a,b", "SLURM_NTASKS": "3"}
    slurm(env)
    assert Path(env["PSHOSTS"]).read_text() == "a slots=1\nb slots=1\n", "one task a node when not told"
    assert env["PSPROCS"] == "3"
    mine = {"SLURM_JOB_NODELIST": "a,b", "PSHOSTS": "/my/hosts", "PSPROCS": "1"}
    slurm(mine)
    assert mine["PSHOSTS"] == "/my/hosts" and mine["PSPROCS"] == "1"


def test_slurm_outside_a_job_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        slurm({})
    text = str(caught.value)
    assert "SLURM_JOB_NODELIST is not set" in text and "unset PSCONFHELP" in text


def test_a_malformed_slurm_node_list_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot read the SLURM node list"):
        slurm({"SLURM_JOB_NODELIST": "node[01-"})


def test_tasks_per_node_that_do_not_match_the_nodes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"SLURM_TASKS_PER_NODE='2\(x3\)' does not match 2 node\(s\)"):
        slurm({"SLURM_JOB_NODELIST": "a,b", "SLURM_TASKS_PER_NODE": "2(x3)"})


def test_pbs_slot_lines_are_counted_per_host_in_first_seen_order(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n2\nn1\nn2\n\n  n2  \n")
    env = {"PBS_NODEFILE": str(nodefile), "PBS_JOBID": "7.server"}
    pbs(env)
    assert Path(env["PSHOSTS"]).name == "pbs-7.server.hosts"
    assert Path(env["PSHOSTS"]).read_text() == "n2 slots=3\nn1 slots=1\n"
    assert env["PSPROCS"] == "4"


def test_pbs_problems_name_the_file_or_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="PBS_NODEFILE is not set"):
        pbs({})
    missing = tmp_path / "gone"
    with pytest.raises(ConfigurationError, match=f"PBS_NODEFILE '{missing}' cannot be read"):
        pbs({"PBS_NODEFILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    env = {"PBS_NODEFILE": str(empty)}
    with pytest.raises(ConfigurationError, match="is empty"):
        pbs(env)
    assert "PSHOSTS" not in env
