"""A run that can never progress is reported by pypsrun, naming who waits on what; one that can is left alone.

Each scenario is a mistake students make: an observe nobody answers, the only
worker crashing, PSPROCS=1 with a task keeping the only client busy, dining
philosophers that deadlock, a delta-bounded pipeline with too few clients.
The report must come within 10 s of the run blocking (PSSTALLGRACE defaults to
2 s), name each blocked party and its element, and end with exit status 3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_processes

from pastset.core.stall import STALLED_STATUS

pytestmark = pytest.mark.timeout(180)

REPORTED_WITHIN = 10.0  # seconds from "everything is blocked" to the report (the bound)


class Run:
    """pypsrun in the background; stderr read line by line as it comes, with the time each line came."""

    def __init__(self, folder: Path, app: str, procs: int = 1, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
        environ.update(PSPROCS=str(procs), **env)
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pastset.commands.run", str(folder / app)],
            env=environ,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.out = ""
        threading.Thread(target=self._read, daemon=True).start()
        self._outreader = threading.Thread(target=self._read_out, daemon=True)
        self._outreader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.lines.append((time.monotonic(), "<EOF>"))
            self.changed.notify_all()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self.out = self.proc.stdout.read()

    @property
    def err(self) -> str:
        return "\n".join(line for _, line in self.lines if line != "<EOF>")

    def wait_line(self, text: str, timeout: float) -> float:
        """The time the first stderr line containing ``text`` came; fails after ``timeout``."""
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(text in line for _, line in self.lines) or any(line == "<EOF>" for _, line in self.lines),
                timeout,
            )
            hits = [t for t, line in self.lines if text in line]
        assert found and hits, f"no line with {text!r} within {timeout} s; stderr so far:\n{self.err}"
        return hits[0]

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self._outreader.join(5)
        with self.changed:
            self.changed.wait_for(lambda: any(line == "<EOF>" for _, line in self.lines), 5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def runs():
    started: list[Run] = []
    yield started
    for each in started:
        each.kill()


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def mark(folder: Path) -> str:
    """App code that writes RUN and the time it is about to block to stderr."""
    return "import os, sys, pastset\nprint('RUN', os.environ['PSRUN'], file=sys.stderr, flush=True)\n"


BLOCKING = "print('BLOCKING', file=sys.stderr, flush=True)\n"


def reported(run: Run, blocked_line: str = "BLOCKING") -> int:
    """Wait for the report (within REPORTED_WITHIN of ``blocked_line``) and the end; return the exit status."""
    blocked = run.wait_line(blocked_line, 60)
    said = run.wait_line("can never progress", REPORTED_WITHIN + 60)
    assert said - blocked < REPORTED_WITHIN, run.err
    return run.finish()


def nothing_left(run: Run) -> None:
    run_id = next(line.split()[1] for _, line in run.lines if line.startswith("RUN "))
    deadline = time.monotonic() + 10
    while run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run_processes(run_id) == []


def waiting_rows(run: Run, until, timeout: float = 30) -> list[dict]:
    """``pypsmanage waiting --json`` of the run, asked until ``until(rows)`` holds."""
    run_id = next(line.split()[1] for _, line in run.lines if line.startswith("RUN "))
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(
            [sys.executable, "-m", "pastset.commands.manage", "waiting", "--json", "--run", run_id],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        if until(rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


def test_observe_nobody_answers_is_reported_naming_the_app_and_element(tmp_path, runs):
    write(
        tmp_path,
        "lonely.py",
        mark(tmp_path) + "r = pastset.PastSet().enter(('results', float))\n" + BLOCKING + "r.observe()\n",
    )
    run = Run(tmp_path, "lonely.py")
    runs.append(run)
    assert reported(run) == STALLED_STATUS
    assert "the app lonely.py" in run.err
    assert "waits in observe on ('results', float)" in run.err
    assert "Traceback" not in run.err
    nothing_left(run)


def test_only_worker_crashing_is_reported_with_its_stderr(tmp_path, runs):
    write(
        tmp_path,
        "worker.py",
        "import pastset\nr = pastset.PastSet().enter(('results', float))\n"
        "def compute():\n    return 1 / 0\n\nr.move((compute(),))\n",
    )
    write(
        tmp_path,
        "master.py",
        mark(tmp_path) + "p = pastset.PastSet()\nr = p.enter(('results', float))\n"
        "p.spawn('worker.py')\n" + BLOCKING + "print(r.observe())\n",
    )
    run = Run(tmp_path, "master.py")
    runs.append(run)
    assert reported(run) == STALLED_STATUS
    report = run.err[run.err.index("can never progress") :]
    assert "the app master.py" in report and "('results', float)" in report
    assert "task t1 (worker.py) failed with status 1" in report
    assert "ZeroDivisionError: division by zero" in report
    assert "return 1 / 0" in report  # the user's frame, shown in the report's stderr tail
    # The task's traceback shows the user's frames only, not the runner's.
    assert "runner.py" not in run.err and "runpy" not in run.err


def test_one_client_kept_busy_by_a_task_that_waits_for_later_spawns(tmp_path, runs):
    write(
        tmp_path,
        "boss.py",
        "import pastset\np = pastset.PastSet()\nparts = p.enter(('part', int))\n"
        "for i in range(2):\n    p.spawn('part.py', [i])\n"
        "total = sum(parts.observe()[1] for _ in range(2))\np.enter(('total', int)).move(('total', total))\n",
    )
    write(
        tmp_path,
        "part.py",
        "import sys, pastset\npastset.PastSet().enter(('part', int)).move(('part', int(sys.argv[1])))\n",
    )
    write(
        tmp_path,
        "tasks.py",
        mark(tmp_path)
        + "p = pastset.PastSet()\np.spawn('boss.py')\n"
        + BLOCKING
        + "print(p.enter(('total', int)).observe())\n",
    )
    run = Run(tmp_path, "tasks.py", procs=1)
    runs.append(run)
    assert reported(run) == STALLED_STATUS
    report = run.err[run.err.index("can never progress") :]
    assert "the app tasks.py" in report and "('total', int)" in report
    assert "task t1 (boss.py on c1" in report and "waits in observe on ('part', int)" in report
    assert "task t2 (part.py) is queued but no client is free" in report
    assert "task t3 (part.py) is queued" in report
    assert report.count("never ran") <= 1  # "N spawned task(s) never ran" is said once at most


PHILOSOPHER = """
import sys, pastset
me, n = int(sys.argv[1]), int(sys.argv[2])
p = pastset.PastSet()
left, right = p.enter(("fork", me)), p.enter(("fork", (me + 1) % n))
held = p.enter(("held", int))
left.observe()                       # take the left fork
held.move(("held", me))
held.observe(n - 1)                  # wait until everybody holds one (makes the deadlock certain)
right.observe()                      # and now the right one: never
p.enter(("table", int)).move(("table", me))
"""

PHILOSOPHERS = (
    """
n = 3
p = pastset.PastSet()
for i in range(n):
    p.enter(("fork", i)).move(("fork", i))
for i in range(n):
    p.spawn("philosopher.py", [i, n])
table = p.enter(("table", int))
"""
    + BLOCKING
    + """
for _ in range(n):
    table.observe()
"""
)


def test_dining_philosophers_deadlock_names_every_philosopher_and_fork(tmp_path, runs):
    write(tmp_path, "philosopher.py", PHILOSOPHER)
    write(tmp_path, "philosophers.py", mark(tmp_path) + PHILOSOPHERS)
    run = Run(tmp_path, "philosophers.py", procs=3)
    runs.append(run)
    assert reported(run) == STALLED_STATUS
    report = run.err[run.err.index("can never progress") :]
    assert "the app philosophers.py" in report and "waits in observe on ('table', int)" in report
    for fork in (1, 2, 0):
        line = next(line for line in report.splitlines() if "philosopher.py" in line and f"('fork', {fork})" in line)
        assert "waits in observe" in line
    assert report.count("philosopher.py") == 3
    nothing_left(run)


def test_delta_pipeline_with_too_few_clients(tmp_path, runs):
    write(
        tmp_path,
        "stage.py",
        "import sys, pastset\nk = int(sys.argv[1])\np = pastset.PastSet()\n"
        "inbox, outbox = p.enter(('pipe', k, int)), p.enter(('pipe', k + 1, int))\nwhile True:\n"
        "    _, _, v = inbox.observe()\n    outbox.move(('pipe', k + 1, v + 1))\n",
    )
    write(
        tmp_path,
        "pipe.py",
        mark(tmp_path) + "p = pastset.PastSet()\nlinks = [p.enter(('pipe', k, int)) for k in range(3)]\n"
        "for link in links:\n    link.delta(2)\nfor k in range(2):\n    p.spawn('stage.py', [k])\n"
        + BLOCKING
        + "for i in range(20):\n    links[0].move(('pipe', 0, i))\nprint(links[2].observe())\n",
    )
    run = Run(tmp_path, "pipe.py", procs=1)
    runs.append(run)
    assert reported(run) == STALLED_STATUS
    report = run.err[run.err.index("can never progress") :]
    assert "the app pipe.py" in report and "waits in move on ('pipe', 0, int)" in report
    assert "task t1 (stage.py on c1" in report and "waits in move on ('pipe', 1, int)" in report
    assert "task t2 (stage.py) is queued but no client is free" in report


def test_a_task_computing_for_12_s_is_not_a_deadlock(tmp_path, runs):
    write(
        tmp_path,
        "slow.py",
        "import time, pastset\nr = pastset.PastSet().enter(('results', float))\n"
        "end = time.monotonic() + 12\nx = 0.0\nwhile time.monotonic() < end:\n    x += 1.0\n"
        "r.move((x,))\n",
    )
    write(
        tmp_path,
        "wait12.py",
        mark(tmp_path) + "p = pastset.PastSet()\nr = p.enter(('results', float))\n"
        "p.spawn('slow.py')\n" + BLOCKING + "print('got', r.observe()[0] > 0, flush=True)\np.halt()\n",
    )
    run = Run(tmp_path, "wait12.py", procs=1)
    runs.append(run)
    assert run.finish(120) == 0, run.err
    assert "got True" in run.out
    assert "can never progress" not in run.err


def test_an_operation_with_a_timeout_is_not_a_deadlock(tmp_path, runs):
    write(
        tmp_path,
        "patient.py",
        mark(tmp_path)
        + "r = pastset.PastSet().enter(('results', float))\n"
        + BLOCKING
        + "try:\n    r.observe(timeout=6)\nexcept pastset.PastSetTimeoutError:\n    print('timed out', flush=True)\n",
    )
    run = Run(tmp_path, "patient.py")
    runs.append(run)
    assert run.finish(120) == 0, run.err
    assert "timed out" in run.out
    assert "can never progress" not in run.err


def test_report_only_setting_keeps_waiting(tmp_path, runs):
    go = tmp_path / "go"
    write(
        tmp_path,
        "later.py",
        mark(tmp_path) + "import threading, time, pathlib\n"
        "r = pastset.PastSet().enter(('results', float))\n"
        "t = threading.Thread(target=lambda: print('got', r.observe(), flush=True))\nt.start()\n"
        + BLOCKING
        + f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.05)\n"
        "r.move((1.5,))\nt.join()\n",
    )
    run = Run(tmp_path, "later.py", PSSTALL="report")
    runs.append(run)
    run.wait_line("can never progress", 60)
    run.wait_line("still waiting", 5)
    assert run.proc.poll() is None
    go.write_text("x")
    assert run.finish() == 0, run.err
    assert "got (1.5,)" in run.out


def test_failfast_ends_the_run_at_the_first_failed_task_with_its_traceback(tmp_path, runs):
    write(tmp_path, "bad.py", "def helper():\n    raise ValueError('bad input 42')\n\nhelper()\n")
    write(
        tmp_path, "ff.py", mark(tmp_path) + "import time\np = pastset.PastSet()\np.spawn('bad.py')\ntime.sleep(120)\n"
    )  # computing, not blocked: only PSFAILFAST ends this run
    run = Run(tmp_path, "ff.py", PSFAILFAST="yes")
    runs.append(run)
    assert run.finish(100) == 1, run.err
    report = run.err[run.err.index("PSFAILFAST") :]
    assert "task t1 (bad.py) failed with status 1" in run.err
    assert "ValueError: bad input 42" in report and "in helper" in report
    assert "runner.py" not in run.err and "runpy" not in run.err
    nothing_left(run)


def test_ctrl_c_while_blocked_prints_one_line(tmp_path, runs):
    write(
        tmp_path,
        "stuck.py",
        mark(tmp_path) + "r = pastset.PastSet().enter(('results', float))\n" + BLOCKING + "r.observe()\n",
    )
    run = Run(tmp_path, "stuck.py", PSSTALLGRACE="120")
    runs.append(run)
    run.wait_line("BLOCKING", 60)
    waiting_rows(run, lambda rows: any(r["op"] == "observe" for r in rows))  # blocked in the server now
    os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert run.finish() == 130
    assert "interrupted while waiting in observe on ('results', float)" in run.err
    assert "Traceback" not in run.err and "socket.py" not in run.err and "channel.py" not in run.err
    nothing_left(run)
