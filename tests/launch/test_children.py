"""Starting a run's processes: the wait for clients to register and what a client's early exit means.

The remote start command is tests/launch/test_deploy.py and the PYTHONPATH of a
checkout tests/launch/test_run.py; here fakes stand for the scheduler and the
clients, and events (never sleeps) decide who finishes first.
"""

from __future__ import annotations

import shlex
import sys
import threading
from typing import Any

import Pyro5.errors

from pastset.launch.children import await_clients, exit_hint, remote_command
from pastset.settings import Settings


class FakeScheduler:
    """A scheduler proxy whose wait_clients returns when ``release`` is set, or raises ``error``."""

    def __init__(self, release: threading.Event, error: Exception | None = None) -> None:
        self.release, self.error = release, error
        self.asked: list[tuple[int, float]] = []

    def __enter__(self) -> FakeScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_clients(self, want: int, timeout: float) -> None:
        self.asked.append((want, timeout))
        if self.error is not None:
            raise self.error
        self.release.wait(30)


class FakeClient:
    """A client that exits with ``code`` once ``exit`` is set, its last output line ``last``."""

    def __init__(self, code: int, last: str, exit: threading.Event) -> None:
        self.code, self.last, self.exit = code, last, exit

    def wait(self, timeout: float | None = None) -> int | None:
        self.exit.wait(30)
        return self.code

    def tail(self) -> str:
        return f"earlier line\n{self.last}\n" if self.last else ""


def test_clients_that_register_leave_no_failures() -> None:
    registered, never = threading.Event(), threading.Event()
    registered.set()
    sched = FakeScheduler(registered)
    clients: list[Any] = [FakeClient(0, "", never), FakeClient(0, "", never)]
    try:
        assert await_clients(lambda: sched, clients, ["c0", "c1"], 2) == []
        assert sched.asked[0][0] == 2
    finally:
        never.set()


def test_a_client_that_exits_first_is_named_with_its_last_line_and_a_hint() -> None:
    hold, exited = threading.Event(), threading.Event()
    exited.set()
    clients: list[Any] = [FakeClient(127, "sh: 1: python3: not found", exited)]
    try:
        failed = await_clients(lambda: FakeScheduler(hold), clients, ["client 0 on node7"], 1)
    finally:
        hold.set()
    assert failed == [
        "client 0 on node7 exited with status 127 (sh: 1: python3: not found): "
        "is Python 3 installed there? set PSPYTHON to its path"
    ]


def test_a_client_killed_by_a_signal_shows_the_shell_status() -> None:
    hold, exited = threading.Event(), threading.Event()
    exited.set()
    try:
        failed = await_clients(lambda: FakeScheduler(hold), [FakeClient(-9, "", exited)], ["c0"], 1)  # type: ignore[list-item]
    finally:
        hold.set()
    assert failed == ["c0 exited with status 137"]


def test_a_server_that_cannot_be_reached_is_the_failure() -> None:
    never = threading.Event()
    down = Pyro5.errors.CommunicationError("connection refused")
    try:
        failed = await_clients(lambda: FakeScheduler(never, down), [FakeClient(0, "", never)], ["c0"], 1)  # type: ignore[list-item]
    finally:
        never.set()
    assert failed == ["server: connection refused"]


def test_exit_hints_point_at_the_fix() -> None:
    assert exit_hint(127, "") == " (): is Python 3 installed there? set PSPYTHON to its path"
    assert "set PSPYTHON" in exit_hint(1, "bash: /opt/py/bin/python: not found")
    hint = exit_hint(1, "ModuleNotFoundError: No module named 'pastset'")
    assert hint.startswith(" (ModuleNotFoundError: No module named 'pastset'): install pastset on that host")
    assert "pypsdeploy" in hint
    assert exit_hint(2, "Traceback: boom") == " (Traceback: boom)"
    assert exit_hint(1, "") == ""


def test_the_remote_command_runs_the_role_from_this_directory(tmp_path: Any, monkeypatch: Any) -> None:
    folder = tmp_path / "my dir"
    folder.mkdir()
    monkeypatch.chdir(folder)
    command = remote_command(Settings.load(environ={}, files=[]), "client", "--run", "r 1")
    assert command.startswith(f"cd {shlex.quote(str(folder))} 2>/dev/null || cd")
    assert command.endswith("-m pastset.commands.remote client --run 'r 1'")
    assert f"p={shlex.quote(sys.executable)}" in command and "p=python3" in command
    mine = remote_command(Settings.load(environ={"PSPYTHON": "/opt/py3"}, files=[]), "client")
    assert "exec /opt/py3 -m pastset.commands.remote client" in mine and "python3" not in mine
