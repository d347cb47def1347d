"""Ending a run's processes: the escalating stop, clients all at once before the server, and the kept record.

Remote children are fakes that record what was done to them and answer at once;
one real local child (a Python reading its lifeline) shows the local path.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import Pyro5.errors
import pytest

from pastset.launch.teardown import keep_run_record, stop, stop_all
from pastset.proc import LocalProcess
from pastset.runs import records_dir


class FakeRemote:
    """A process on another host that ends at the ``ends_at`` step: 0 by itself, 1 on its lifeline, 2 when killed."""

    host = "node3"

    def __init__(self, ends_at: int, log: list[str] | None = None, barrier: threading.Barrier | None = None) -> None:
        self.ends_at, self.steps = ends_at, 0
        self.log = [] if log is None else log
        self.barrier = barrier
        self.done: list[str] = []

    def wait(self, timeout: float | None = None) -> int | None:
        if self.barrier is not None:
            self.barrier.wait(10)  # every client is being stopped at once, or this breaks
            self.barrier = None
        self.done.append("wait")
        return 0 if self.steps >= self.ends_at else None

    def close_stdin(self) -> None:
        self.done.append("close")
        self.log.append(f"close {id(self)}")
        self.steps = max(self.steps, 1)

    def kill(self) -> None:
        self.done.append("kill")
        self.steps = 2


@pytest.mark.parametrize(
    ("ends_at", "done"),
    [(0, ["wait"]), (1, ["wait", "close", "wait"]), (2, ["wait", "close", "wait", "kill", "wait"])],
)
def test_a_remote_child_is_let_be_then_cut_off_then_killed(ends_at: int, done: list[str]) -> None:
    proc = FakeRemote(ends_at)
    stop(proc)  # type: ignore[arg-type]
    assert proc.done == done


def test_a_child_that_must_be_killed_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pastset.launch.teardown"):
        stop(FakeRemote(2))  # type: ignore[arg-type]
    assert "process on node3 did not stop; cutting it off" in caplog.text


def test_a_local_child_ends_when_its_lifeline_closes() -> None:
    child = LocalProcess([sys.executable, "-c", "import sys; sys.stdin.read()"], env={})
    child.close_stdin()
    stop(child, grace=30)
    assert child.poll() == 0, "it ended by itself, not by a signal"


def test_all_clients_are_stopped_at_once_and_the_server_after_them() -> None:
    order: list[str] = []
    barrier = threading.Barrier(3)
    clients = [FakeRemote(0, order, barrier) for _ in range(3)]
    server = FakeRemote(1, order)
    stop_all(clients, server)  # type: ignore[arg-type]
    assert all(c.done == ["wait"] for c in clients)
    assert not barrier.broken
    assert order == [f"close {id(server)}"], "the server's lifeline is closed first, then it is stopped"
    assert server.done == ["close", "wait"]
    stop_all([], None)


class FakeSched:
    def __init__(self, record: dict[str, Any] | None) -> None:
        self.given = record

    def record(self) -> dict[str, Any]:
        if self.given is None:
            raise Pyro5.errors.CommunicationError("gone")
        return dict(self.given)


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def test_the_record_is_kept_with_the_app_and_its_arguments(data_home: Path) -> None:
    keep_run_record(FakeSched({"run": "r-77", "tasks": []}), "r-77", Path("/apps/master.py"), ["-n", "3"], "")
    path = records_dir() / "r-77.json"
    assert records_dir().is_relative_to(data_home)
    text = path.read_text()
    assert '"app": "/apps/master.py"' in text and '"args": ["-n", "3"]' in text


def test_a_server_that_is_gone_leaves_a_warning_and_no_record(
    data_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pastset.launch.teardown"):
        keep_run_record(FakeSched(None), "r-78", None, [], str(data_home / "report.html"))
    assert "could not fetch the run's record for its report: gone" in caplog.text
    assert not (records_dir() / "r-78.json").exists() and not (data_home / "report.html").exists()


def test_with_psreport_the_report_is_written_and_a_failure_to_is_only_a_warning(
    data_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = {"run": "r-79", "tasks": [], "clients": []}
    report = data_home / "reports" / "run.html"
    keep_run_record(FakeSched(record), "r-79", None, [], str(report))
    assert "r-79" in report.read_text()
    blocked = data_home / "a-file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="pastset.launch.teardown"):
        keep_run_record(FakeSched(record), "r-80", None, [], str(blocked / "run.html"))
    assert (records_dir() / "r-80.json").exists(), "the record is kept all the same"
    assert f"PSREPORT={blocked / 'run.html'}: the report was not written" in caplog.text
