"""Hosts files, client placement, and the built-in SLURM/PBS configuration helpers."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest

from pastset.confhelp import pbs, slurm
from pastset.errors import ConfigurationError
from pastset.launch.hosts import HostEntry, assign_clients, parse_hosts, read_hosts_file
from pastset.settings import Settings


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """The batch helpers write hosts files under the temporary directory: this test's own, not /tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_hosts_files_of_the_batch_helpers_go_to_this_test_s_directory(tmp_path, kind):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\n")
    env = {"SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "42"} if kind == "slurm" else {"PBS_NODEFILE": str(nodefile)}
    (slurm if kind == "slurm" else pbs)(env)
    assert Path(env["PSHOSTS"]).parent.parent == tmp_path


def test_plain_lines_comments_and_blanks():
    text = "# cluster\nn0\n\n  n1   # the second\n\t\nn2\n"
    assert parse_hosts(text) == [HostEntry("n0"), HostEntry("n1"), HostEntry("n2")]


@pytest.mark.parametrize(
    ("line", "entry"),
    [
        ("node1 slots=4", HostEntry("node1", 4)),
        ("node1 slots=4 max-slots=8", HostEntry("node1", 4)),
        ("3/node2", HostEntry("node2", 3)),
        ("node3:2", HostEntry("node3", 2)),
        ("10.0.0.5", HostEntry("10.0.0.5")),
        ("node-4.example.org", HostEntry("node-4.example.org")),
        ("::1", HostEntry("::1")),
    ],
)
def test_slot_forms(line, entry):
    assert parse_hosts(line) == [entry]


@pytest.mark.parametrize("line", ["two hosts", "node slots=x", "node:0", "node slots=0", "/node", "a b c"])
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "hosts"
    path.write_text(f"good\n# fine\n{line}\n")
    with pytest.raises(ConfigurationError, match=rf"{path}:3: "):
        read_hosts_file(str(path))


def test_missing_and_empty_files_are_clear(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be read"):
        read_hosts_file(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigurationError, match="names no host"):
        read_hosts_file(str(empty))


def test_assignment_uses_slots_when_procs_unset():
    entries = [HostEntry("a", 2), HostEntry("b"), HostEntry("c", 3)]
    assert assign_clients(entries, None) == ["a", "a", "b", "c", "c", "c"]


def test_assignment_wraps_around_with_a_warning(caplog):
    entries = [HostEntry("a"), HostEntry("b")]
    assert assign_clients(entries, 2) == ["a", "b"]
    assert "wrapping" not in caplog.text
    with caplog.at_level(logging.WARNING):
        assert assign_clients(entries, 5) == ["a", "b", "a", "b", "a"]
    assert "wrapping around" in caplog.text


def test_slurm_helper_expands_hostlists_and_tasks_per_node(tmp_path):
    env = {
        "SLURM_JOB_NODELIST": "node[01-03,07],gpu5",
        "SLURM_TASKS_PER_NODE": "2(x3),1,4",
        "SLURM_NTASKS": "11",
        "SLURM_JOB_ID": "42",
    }
    slurm(env)
    assert env["PSPROCS"] == "11"
    entries = read_hosts_file(env["PSHOSTS"])
    assert entries == [
        HostEntry("node01", 2),
        HostEntry("node02", 2),
        HostEntry("node03", 2),
        HostEntry("node07", 1),
        HostEntry("gpu5", 4),
    ]
    assert len(assign_clients(entries, None)) == 11


def test_slurm_helper_keeps_explicit_settings_and_reports_bad_input():
    env = {"SLURM_JOB_NODELIST": "n1", "PSPROCS": "3", "PSHOSTS": "/my/hosts"}
    slurm(env)
    assert (env["PSPROCS"], env["PSHOSTS"]) == ("3", "/my/hosts")
    with pytest.raises(ConfigurationError, match="SLURM_JOB_NODELIST is not set"):
        slurm({})
    with pytest.raises(ConfigurationError, match="node list"):
        slurm({"SLURM_JOB_NODELIST": "n[1-"})
    with pytest.raises(ConfigurationError, match="does not match"):
        slurm({"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "1"})


def test_pbs_helper_counts_slots_per_node(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn1\nn3\n")
    env = {"PBS_NODEFILE": str(nodefile), "PBS_JOBID": "7.server"}
    pbs(env)
    assert env["PSPROCS"] == "5"
    assert read_hosts_file(env["PSHOSTS"]) == [HostEntry("n1", 3), HostEntry("n2", 1), HostEntry("n3", 1)]
    with pytest.raises(ConfigurationError, match="PBS_NODEFILE is not set"):
        pbs({})


def test_confhelp_by_name_through_settings(monkeypatch):
    for key in ("PSPROCS", "PSHOSTS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PSCONFHELP", "slurm")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "c[1-2]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "2(x2)")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    try:
        settings = Settings.load(files=[])
        assert settings.PSPROCS == 4
        assert [e.name for e in read_hosts_file(settings.PSHOSTS)] == ["c1", "c2"]
    finally:  # the helper wrote os.environ itself, as batch-system helpers do
        for key in ("PSPROCS", "PSHOSTS"):
            os.environ.pop(key, None)
