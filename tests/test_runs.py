"""Run records: private files, live runs told from dead ones, one run chosen or a clear error."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pastset.errors import ConfigurationError
from pastset.runs import forget_run, list_runs, pick_run, record_run, runs_dir


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    return folder


@pytest.fixture
def dead_pid() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    yield proc.pid


def test_a_record_is_private_and_listed_until_forgotten(runtime: Path) -> None:
    path = record_run("r-1", {"pid": os.getpid(), "secret": "s"})
    assert path.parent == runs_dir() and runtime in path.parents
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    [row] = list_runs()
    assert row["run"] == "r-1" and row["alive"] is True and row["secret"] == "s"
    forget_run("r-1")
    assert list_runs() == []
    forget_run("r-1")  # forgetting twice is fine


def test_a_run_whose_pypsrun_is_gone_is_not_live(runtime: Path, dead_pid: int) -> None:
    record_run("old", {"pid": dead_pid})
    record_run("new", {"pid": os.getpid()})
    assert {r["run"]: r["alive"] for r in list_runs()} == {"old": False, "new": True}
    assert pick_run(None)["run"] == "new"
    with pytest.raises(ConfigurationError, match="no live run named 'old'"):
        pick_run("old")


def test_two_live_runs_need_a_name(runtime: Path) -> None:
    record_run("alpha-1", {"pid": os.getpid()})
    record_run("beta-2", {"pid": os.getpid()})
    with pytest.raises(ConfigurationError, match="2 runs are live .*--run NAME"):
        pick_run(None)
    assert pick_run("beta")["run"] == "beta-2"


def test_no_live_run_says_how_to_start_one(runtime: Path) -> None:
    with pytest.raises(ConfigurationError, match="no live run found; start one with pypsrun"):
        pick_run(None)
