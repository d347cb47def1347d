"""``pypsmanage`` (pastset.commands.manage) run in this process: its tables, the runs view, reaching a run.

Live runs with clients and tasks are in tests/commands/test_operate.py; here
a :class:`pastset.server.host.Server` runs in this process on loopback with
one scheduled run, and run files live in a private runtime directory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from Pyro5 import config as pyro_config

from pastset.commands import manage
from pastset.runs import record_run
from pastset.server.host import Server
from pastset.settings import Settings

pytestmark = pytest.mark.timeout(60)

SECRET = "manage-secret"


@pytest.fixture(autouse=True)
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for name in ("SERVERTYPE", "THREADPOOL_SIZE", "THREADPOOL_SIZE_MIN", "SOCK_NODELAY", "POLLTIMEOUT"):
        monkeypatch.setattr(pyro_config, name, getattr(pyro_config, name))
    for name in ("PSRUN", "PSNS", "PSSECRET", "PSSTORE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    server = Server(Settings(PSBIN=str(tmp_path), PSSECRET=SECRET))
    space = server.open("mrun", scheduler=True)
    space.enter(("jobs", int))
    space.enter(("results", str))
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    monkeypatch.setenv("PSSECRET", SECRET)
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        server.close()


def test_a_table_is_aligned_under_an_upper_case_header() -> None:
    rows = [{"id": 1, "name": "a", "tags": ["x", "y"]}, {"id": 100, "name": None, "tags": []}]
    lines = manage.table(rows, ["id", "name", "tags"]).splitlines()
    assert lines[0].split() == ["ID", "NAME", "TAGS"]
    assert lines[0].index("NAME") == lines[1].index("a") == len("100") + 2
    assert lines[1].endswith("x y") and lines[2] == "100", "empty cells leave no trailing spaces"


def test_a_timestamp_cell_is_shown_as_the_local_time_of_day() -> None:
    stamp = time.mktime((2026, 1, 2, 13, 14, 15, 0, 0, -1))
    assert manage.table([{"at": stamp, "small": 2.5}], ["at", "small"]).splitlines()[1].split() == ["13:14:15", "2.5"]


def test_the_runs_view_never_shows_a_secret_and_filters_rows(capsys: pytest.CaptureFixture[str]) -> None:
    record_run("run-one", {"pid": 0, "ns": "127.0.0.1:1", "secret": "topsecret"})
    record_run("run-two", {"pid": 0, "ns": "127.0.0.1:2", "secret": "topsecret"})
    assert manage.main(["runs", "--json"]) == 0
    out = capsys.readouterr().out
    assert "topsecret" not in out
    assert {row["run"] for row in json.loads(out)} == {"run-one", "run-two"}
    assert manage.main(["runs", "two", "--json"]) == 0
    assert [row["run"] for row in json.loads(capsys.readouterr().out)] == ["run-two"]


def test_status_and_elements_of_a_run_reached_by_its_name_server(
    live: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manage.main(["status", "--ns", live.address, "--run", "mrun", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == "mrun"
    assert manage.main(["elements", "jobs", "--ns", live.address, "--run", "mrun", "--json"]) == 0
    assert [row["template"] for row in json.loads(capsys.readouterr().out)] == [repr(("jobs", int))]


def test_pause_and_resume_name_the_elements_they_touched(live: Server, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--ns", live.address, "--run", "mrun"]
    assert manage.main(["pause", "results", *where]) == 0
    assert capsys.readouterr().out.strip() == "run mrun: paused elements 2"
    assert manage.main(["resume", "nomatch", *where]) == 0
    assert capsys.readouterr().out.strip() == "run mrun: resumed elements (none matched)"
    assert manage.main(["pause", *where]) == 0
    assert capsys.readouterr().out.strip() == "run mrun: paused dispatch and observes"
    assert live.spaces["mrun"].paused


def test_stop_ends_the_run_and_says_by_whom(live: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert manage.main(["stop", "--ns", live.address, "--run", "mrun"]) == 0
    assert capsys.readouterr().out.strip() == "run mrun: stopped"
    assert live.schedulers["mrun"].wait_end(5).startswith("the run was stopped by pypsmanage at ")


def test_a_run_without_a_scheduler_there_is_a_clear_error(live: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert manage.main(["status", "--ns", live.address, "--run", "elsewhere"]) == 1
    assert f"pypsmanage: run 'elsewhere' has no scheduler at {live.address}" in capsys.readouterr().err


def test_a_wrong_secret_is_told_with_the_fix(
    live: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PSSECRET", "wrong")
    assert manage.main(["status", "--ns", live.address, "--run", "mrun"]) == 1
    err = capsys.readouterr().err
    assert "refused the connection" in err and "PSSECRET" in err and SECRET not in err


def test_with_no_live_run_it_says_how_to_name_one(capsys: pytest.CaptureFixture[str]) -> None:
    record_run("dead-run", {"pid": 0, "ns": "127.0.0.1:1"})  # its pypsrun is gone
    assert manage.main(["status"]) == 1
    assert capsys.readouterr().err.strip() == (
        "pypsmanage: no live run found; start one with pypsrun, or name one with --ns/--run"
    )
