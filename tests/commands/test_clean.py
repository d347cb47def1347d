"""``pypsclean`` (pastset.commands.clean) run in this process on this host only (``--here`` or no hosts).

Processes are marked as a run's by ``PSRUN`` in their environment, as apps and
tasks are; run files live in a private runtime directory; the Redis store is
the session's redis-server on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pastset.commands import clean
from pastset.runs import list_runs, record_run
from pastset.transport.redis_scripts import Keys


@pytest.fixture(autouse=True)
def private_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("PSSTORE", raising=False)
    monkeypatch.delenv("PSRUN", raising=False)


@pytest.fixture
def run_id() -> str:
    return f"clean-{uuid.uuid4().hex[:10]}"


class Sleepers:
    """Processes started for a test, ended by pid (their own session) when it ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, run: str | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env.pop("PSRUN", None)
        if run is not None:
            env["PSRUN"] = run
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()"],
            env=env,
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert proc.stdin is not None
            proc.stdin.close()


@pytest.fixture
def sleepers() -> Iterator[Sleepers]:
    made = Sleepers()
    try:
        yield made
    finally:
        made.stop()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def test_with_no_stale_run_it_says_how_to_name_one(capsys: pytest.CaptureFixture[str]) -> None:
    record_run("live-run-xyz", {"pid": os.getpid(), "hosts": []})  # its pypsrun (this process) is alive
    assert clean.main([]) == 0
    assert "no stale runs found (name one with --run RUN)" in capsys.readouterr().out


def test_a_dry_run_lists_the_run_s_processes_and_ends_none(
    run_id: str, sleepers: Sleepers, capsys: pytest.CaptureFixture[str]
) -> None:
    mine, other = sleepers.start(run_id), sleepers.start(run_id + "-other")
    assert clean.main(["--run", run_id, "--here", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == f"{run_id}: would end 1 process(es) {mine.pid}"
    assert mine.poll() is None and other.poll() is None


def test_a_named_run_s_processes_are_ended_and_no_one_else_s(
    run_id: str, sleepers: Sleepers, capsys: pytest.CaptureFixture[str]
) -> None:
    mine, other, unmarked = sleepers.start(run_id), sleepers.start(run_id + "x"), sleepers.start()
    assert clean.main(["--run", run_id, "--here"]) == 0
    assert capsys.readouterr().out.strip() == f"{run_id}: ended 1 process(es) {mine.pid}"
    assert mine.wait(10) == -signal.SIGTERM
    assert other.poll() is None and unmarked.poll() is None


def test_a_stale_run_is_found_by_its_run_file_cleaned_and_forgotten(
    run_id: str, sleepers: Sleepers, capsys: pytest.CaptureFixture[str]
) -> None:
    left = sleepers.start(run_id)
    record_run(run_id, {"pid": dead_pid(), "hosts": []})
    assert clean.main([]) == 0
    assert f"{run_id}: ended 1 process(es) on " in capsys.readouterr().out
    assert left.wait(10) == -signal.SIGTERM
    assert run_id not in {r["run"] for r in list_runs()}


def test_a_recorded_launcher_pid_that_is_not_pypsrun_is_never_ended(
    run_id: str, sleepers: Sleepers, capsys: pytest.CaptureFixture[str]
) -> None:
    reused = sleepers.start()  # the run's pypsrun pid, now another program's
    record_run(run_id, {"pid": reused.pid, "hosts": []})
    assert clean.main(["--run", run_id]) == 0
    assert f"{run_id}: ended 0 process(es)" in capsys.readouterr().out
    assert reused.poll() is None


def test_the_run_s_keys_in_the_redis_store_are_counted_then_removed(
    run_id: str, redis_single: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, other = Keys(run_id), Keys(run_id + "x")
    client = redis_single.client()
    made = [keys.registry, keys.meta(1), keys.key(1, "q")]
    try:
        for key in [*made, other.registry]:
            client.set(key, b"1")
        monkeypatch.setenv("PSSTORE", redis_single.url)
        assert clean.main(["--run", run_id, "--here", "--dry-run"]) == 0
        assert f"{run_id}: would remove 3 key(s) from {redis_single.url}" in capsys.readouterr().out
        assert client.exists(*made) == 3
        assert clean.main(["--run", run_id, "--here"]) == 0
        assert f"{run_id}: removed 3 key(s) from {redis_single.url}" in capsys.readouterr().out
        assert client.exists(*made) == 0 and client.exists(other.registry) == 1
    finally:
        client.delete(*made, other.registry)
        client.close()


def test_an_unreachable_store_fails_the_clean_and_says_why_without_the_password(
    run_id: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PSSTORE", "redis://u:hunter2@127.0.0.1:1")
    assert clean.main(["--run", run_id, "--here"]) == 1
    captured = capsys.readouterr()
    assert f"{run_id}: ended 0 process(es)" in captured.out
    assert f"{run_id}: cannot clean the Redis store (PSSTORE): " in captured.err
    assert "hunter2" not in captured.err
