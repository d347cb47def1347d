"""What pypsrun watches while the application runs: the run's end, stalls, fail-fast and the progress line.

The application and the scheduler are fakes: the application "runs" for a given
number of polls, the scheduler answers from scripted values, so every watcher
returns at once and no test waits on time.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

import Pyro5.errors
import pytest

from pastset.core.stall import STALLED_STATUS
from pastset.launch.watch import end_process, failfast_report, show_progress, watch_health, watch_stop
from pastset.settings import Settings


class FakeApp:
    """An application that runs for ``polls`` polls; records terminate/kill; ``stubborn`` ignores SIGTERM."""

    pid = 4242

    def __init__(self, polls: int = 1000, stubborn: bool = False) -> None:
        self.polls, self.stubborn = polls, stubborn
        self.done: list[str] = []

    def poll(self) -> int | None:
        self.polls -= 1
        return None if self.polls >= 0 else 0

    def terminate(self) -> None:
        self.done.append("terminate")

    def kill(self) -> None:
        self.done.append("kill")

    def wait(self, timeout: float | None = None) -> int:
        if self.stubborn:
            raise subprocess.TimeoutExpired("app", timeout or 0)
        return -15


class FakeSched:
    """Answers health, snapshot and wait_end from lists (the last answer repeats)."""

    def __init__(
        self, health: list[Any] | None = None, ends: list[Any] | None = None, snaps: list[Any] | None = None
    ) -> None:
        self.healths, self.ends, self.snaps = health or [], ends or [None], snaps or []

    def __enter__(self) -> FakeSched:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @staticmethod
    def _next(answers: list[Any]) -> Any:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def health(self, pid: int, grace: float, failfast: bool) -> dict[str, Any]:
        return self._next(self.healths)

    def wait_end(self, timeout: float | None) -> Any:
        return self._next(self.ends)

    def snapshot(self) -> dict[str, Any]:
        return self._next(self.snaps)


def test_end_process_asks_first_and_kills_only_if_it_must() -> None:
    polite = FakeApp()
    end_process(polite)  # type: ignore[arg-type]
    assert polite.done == ["terminate"]
    stubborn = FakeApp(stubborn=True)
    end_process(stubborn)  # type: ignore[arg-type]
    assert stubborn.done == ["terminate", "kill"]


def test_the_runs_end_ends_a_running_app_saying_why(caplog: pytest.LogCaptureFixture) -> None:
    app = FakeApp()
    with caplog.at_level(logging.WARNING, logger="pastset.launch.watch"):
        watch_stop(lambda: FakeSched(ends=["stopped by pypsmanage"]), app)  # type: ignore[arg-type]
    assert app.done == ["terminate"]
    assert "stopped by pypsmanage; ending the application" in caplog.text


@pytest.mark.parametrize(
    ("app", "end"),
    [(FakeApp(), None), (FakeApp(polls=0), "the run ended"), (FakeApp(), Pyro5.errors.CommunicationError("gone"))],
)
def test_no_reason_an_app_already_gone_or_a_lost_server_end_nothing(app: FakeApp, end: Any) -> None:
    watch_stop(lambda: FakeSched(ends=[end]), app)  # type: ignore[arg-type]
    assert app.done == []


def settings(**env: str) -> Settings:
    return Settings.load(environ=env, files=[])


TASK = {"id": "t3", "app": "worker.py", "args": ["7"], "status": 2, "host": "n1", "stderr_tail": "Traceback\nBoom\n"}
STALL = {
    "blocked": [{"who": "the app (pid 4242)", "op": "observe", "template": "('results', int)", "element": 2}],
    "quiet_for": 2.0,
}


def test_with_failfast_the_first_failed_task_ends_the_run_with_its_status(capsys: pytest.CaptureFixture[str]) -> None:
    ended: list[int] = []
    health = [{"failed": [], "stall": None}, {"failed": [TASK], "stall": None}]
    watch_health(
        lambda: FakeSched(health=health),
        FakeApp(),  # type: ignore[arg-type]
        settings(PSFAILFAST="yes"),
        "r1",
        lambda app, verdict: ended.append(verdict),
    )
    assert ended == [2]
    assert capsys.readouterr().err == failfast_report(TASK)


def test_without_failfast_a_failed_task_ends_nothing() -> None:
    ended: list[int] = []
    app = FakeApp(polls=3)
    watch_health(
        lambda: FakeSched(health=[{"failed": [TASK], "stall": None}]),
        app,  # type: ignore[arg-type]
        settings(),
        "r1",
        lambda app, verdict: ended.append(verdict),
    )
    assert ended == [] and app.polls < 0, "watched until the app ended"


def test_a_stall_is_reported_and_ends_the_run_with_the_stalled_status(capsys: pytest.CaptureFixture[str]) -> None:
    ended: list[int] = []
    watch_health(
        lambda: FakeSched(health=[{"failed": [], "stall": STALL}]),
        FakeApp(),  # type: ignore[arg-type]
        settings(),
        "r1",
        lambda app, verdict: ended.append(verdict),
    )
    assert ended == [STALLED_STATUS]
    err = capsys.readouterr().err
    assert "run r1 can never progress" in err and "the app (pid 4242) waits in observe" in err


def test_with_psstall_report_each_stall_is_reported_once_and_the_run_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ended: list[int] = []
    other = {**STALL, "blocked": [{**STALL["blocked"][0], "op": "move"}]}
    health = [{"failed": [], "stall": s} for s in (STALL, STALL, other, STALL)]
    watch_health(
        lambda: FakeSched(health=health),
        FakeApp(polls=6),  # type: ignore[arg-type]
        settings(PSSTALL="report"),
        "r1",
        lambda app, verdict: ended.append(verdict),
    )
    assert ended == []
    err = capsys.readouterr().err
    assert err.count("can never progress") == 2, "the same stall once; a different one again"
    assert "PSSTALL=report: still waiting" in err


def test_the_runs_end_or_a_server_of_another_version_stops_the_watch(caplog: pytest.LogCaptureFixture) -> None:
    app = FakeApp()
    watch_health(
        lambda: FakeSched(health=[{"failed": [], "stall": None}], ends=["ended"]),
        app,  # type: ignore[arg-type]
        settings(),
        "r1",
        lambda app, verdict: None,
    )
    assert app.polls == 999, "returned after the first look"
    with caplog.at_level(logging.WARNING, logger="pastset.launch.watch"):
        watch_health(
            lambda: FakeSched(health=[{"no": "such keys"}]),
            FakeApp(),  # type: ignore[arg-type]
            settings(),
            "r1",
            lambda app, verdict: None,
        )
    assert "cannot watch the run for stalls (KeyError: 'failed'); it goes on without" in caplog.text


def test_the_progress_line_counts_clients_and_tasks_and_is_cleared_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = {
        "tasks": [{"state": s} for s in ("queued", "running", "done", "failed")],
        "clients": [{"alive": True}, {"alive": False}],
        "paused": True,
    }
    show_progress(lambda: FakeSched(snaps=[snap], ends=["ended"]), FakeApp(), "r1", 3)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err == ("\r\x1b[Kpypsrun r1: clients 1/3 ready, tasks 3/4 dispatched, 2 finished, 1 failed [paused]\r\x1b[K")


def test_the_progress_line_is_cleared_when_the_server_goes(capsys: pytest.CaptureFixture[str]) -> None:
    gone = Pyro5.errors.CommunicationError("gone")
    show_progress(lambda: FakeSched(snaps=[gone]), FakeApp(), "r1", 1)  # type: ignore[arg-type]
    assert capsys.readouterr().err == "\r\x1b[K"


def test_the_failfast_report_names_the_task_and_indents_its_traceback() -> None:
    assert failfast_report(TASK) == (
        "pypsrun: task t3 (worker.py 7) failed with status 2 on n1; PSFAILFAST=yes ends the run:\n  Traceback\n  Boom\n"
    )
    bare = failfast_report({"id": "t1", "app": "a.py", "status": 1})
    assert (
        bare == "pypsrun: task t1 (a.py) failed with status 1; PSFAILFAST=yes ends the run:\n  (no output on stderr)\n"
    )
