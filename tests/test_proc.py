"""Process helpers: bounded escalating stops, shell-style statuses, a run's processes by its identity."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pastset.proc import end_pids, exit_status, processes_of_run, stop_process

STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def spawn(started: list[subprocess.Popen], code: str, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    started.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_process_that_ignores_sigterm_is_killed(started: list[subprocess.Popen]) -> None:
    proc = spawn(started, STUBBORN)
    assert stop_process(proc, grace=0.1) == -signal.SIGKILL


def test_exit_statuses_read_as_a_shell_would() -> None:
    assert [exit_status(c) for c in (0, 3, -9, -15, None)] == [0, 3, 137, 143, 1]


def test_a_run_is_found_by_its_identity_and_only_it_is_ended(started: list[subprocess.Popen]) -> None:
    run, other = f"t-{secrets.token_hex(4)}", f"t-{secrets.token_hex(4)}"
    ours = spawn(started, STUBBORN, PSRUN=run)
    theirs = spawn(started, STUBBORN, PSRUN=other)
    assert processes_of_run(run) == [ours.pid]
    assert end_pids(processes_of_run(run), grace=0.2) == [ours.pid]
    assert ours.wait(10) == -signal.SIGKILL
    assert theirs.poll() is None, "another run's process was touched"
