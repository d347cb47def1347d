"""Run records: private files, live runs told from dead ones, one run chosen or a clear error.

Run files live in this user's own runtime directory; one made by another user is a clear error.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pastset.errors import ConfigurationError
from pastset.runs import forget_run, list_runs, pick_run, record_run, runs_dir

pytestmark = pytest.mark.timeout(60)

NOBODY = pwd.getpwnam("nobody").pw_uid


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


def test_a_run_file_without_a_pid_is_not_live(runtime: Path) -> None:
    # os.kill(0, 0) signals this process group, which exists: pid 0 must not read as a live pypsrun.
    record_run("no-pid", {})
    record_run("pid-0", {"pid": 0})
    assert {r["run"]: r["alive"] for r in list_runs()} == {"no-pid": False, "pid-0": False}


def test_two_live_runs_need_a_name(runtime: Path) -> None:
    record_run("alpha-1", {"pid": os.getpid()})
    record_run("beta-2", {"pid": os.getpid()})
    with pytest.raises(ConfigurationError, match="2 runs are live .*--run NAME"):
        pick_run(None)
    assert pick_run("beta")["run"] == "beta-2"


def test_no_live_run_says_how_to_start_one(runtime: Path) -> None:
    with pytest.raises(ConfigurationError, match="no live run found; start one with pypsrun"):
        pick_run(None)


@pytest.fixture
def foreign_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_RUNTIME_DIR unset and TMPDIR private, with ``runtime-UID`` pre-created by another user."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    planted = tmp / f"runtime-{os.geteuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() caches its answer
    return planted


def test_a_pre_created_runtime_directory_is_a_clear_error(foreign_runtime):
    with pytest.raises(ConfigurationError, match=f"runtime directory {foreign_runtime}.*XDG_RUNTIME_DIR"):
        runs_dir()
    with pytest.raises(ConfigurationError, match=str(foreign_runtime)):
        record_run("r1", {"secret": "x"})
    assert list(foreign_runtime.iterdir()) == []  # nothing written into the other user's directory


def test_pypsrun_names_the_directory_without_a_traceback(foreign_runtime, tmp_path):
    (tmp_path / "app.py").write_text("print('ran')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    done = subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"runtime directory {foreign_runtime}" in done.stderr and "XDG_RUNTIME_DIR" in done.stderr
    assert "Traceback" not in done.stderr and "ran" not in done.stdout


def test_a_group_writable_or_linked_runtime_directory_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (tmp_path / "link").symlink_to(shared)
    for runtime in (shared, tmp_path / "link"):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        monkeypatch.setenv("TMPDIR", str(shared))
        monkeypatch.setattr("tempfile.tempdir", None)
        with pytest.raises(ConfigurationError, match="runtime directory"):
            runs_dir()


def test_a_private_runtime_directory_is_used(tmp_path, monkeypatch):
    runtime = tmp_path / "mine"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    path = record_run("r2", {"secret": "x"})
    assert path.parent == runs_dir() and runs_dir().is_relative_to(runtime)
    assert path.stat().st_mode & 0o777 == 0o600
