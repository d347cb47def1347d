"""Operating a live run: pypsmanage views, pause/resume/stop, top, slots, progress, dead clients."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LiveRun, run_processes

pytestmark = pytest.mark.timeout(120)

BAG = """
import os, sys, pastset
n, s = int(sys.argv[1]), float(sys.argv[2])
print("RUN", os.environ["PSRUN"], file=sys.stderr, flush=True)
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", int))
for i in range(n):
    jobs.move((s,))
for _ in range(int(os.environ.get("WORKERS", "2"))):
    p.spawn("sleeper.py")
for i in range(n):
    done.observe()
    print("done", i + 1, flush=True)
p.halt()
"""

SLEEPER = """
import time, pastset
p = pastset.PastSet()
jobs, done = p.enter(("jobs", float)), p.enter(("done", int))
while True:
    (s,) = jobs.observe()
    time.sleep(s)
    done.move((1,))
"""


@pytest.fixture
def bag(tmp_path: Path) -> Path:
    (tmp_path / "bag.py").write_text(BAG)
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    return tmp_path


@pytest.fixture
def live(bag: Path) -> Iterator[LiveRun]:
    run = LiveRun(bag, "bag.py", "30", "0.3", PSPROCS="2")
    try:
        yield run
    finally:
        run.close()


def test_views_show_real_specs_tasks_elements_and_status(live):
    live.wait_done(2)
    clients = live.snapshot("clients")
    assert len(clients) == 2
    for c in clients:
        assert c["cores"] == os.cpu_count() and c["memory"] > 2**20 and c["disk"] > 0 and c["speed"] > 0
        assert c["alive"] is True and c["arch"] and c["system"].startswith("Linux")
    tasks = live.snapshot("tasks")
    assert [t["app"] for t in tasks] == ["sleeper.py", "sleeper.py"]
    assert {t["state"] for t in tasks} == {"running"}
    elements = live.snapshot("elements")
    assert {e["template"] for e in elements} == {"('jobs', <class 'float'>)", "('done', <class 'int'>)"}
    jobs = next(e for e in elements if "jobs" in e["template"])
    assert jobs["last"] == 30 and 0 < jobs["first"] <= 30
    status = live.snapshot("status")
    assert status["state"] == "running" and status["clients alive"] == 2 and status["tasks running"] == 2
    table = live.manage("clients")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "HOST", "SYSTEM"]
    filtered = live.snapshot("elements")
    assert len([e for e in filtered if "done" in e["template"]]) == 1
    only_done = json.loads(live.manage("elements", "done", "--json").stdout)
    assert len(only_done) == 1 and "done" in only_done[0]["template"]


def test_pause_stops_the_work_and_resume_finishes_it(live):
    live.wait_done(3)
    paused = live.manage("pause")
    assert paused.returncode == 0 and "paused" in paused.stdout
    taken = live.wait_quiet_after_pause()  # the items in hand (0.3 s each) finish
    assert live.element("done")["last"] == taken
    assert live.element("jobs")["first"] == taken < 30, "a worker took an item while paused"
    assert live.snapshot("status")["state"] == "paused"
    assert live.manage("resume").returncode == 0
    live.wait_done(30)
    assert live.proc.wait(30) == 0
    assert_nothing_left(live.run_id)


def test_pausing_one_element_leaves_the_others(live):
    live.wait_done(2)
    result = live.manage("pause", "jobs")
    assert "elements 1" in result.stdout
    taken = live.wait_quiet_after_pause()
    live.wait_done(taken)  # 'done' is not paused: the app still sees every result
    assert live.element("jobs")["first"] == taken < 30, "a worker took an item while 'jobs' was paused"
    assert live.snapshot("status")["state"] == "running"  # only one element is held
    live.manage("resume", "jobs")
    live.wait_done(30)
    assert live.proc.wait(30) == 0


def test_stop_ends_the_run_the_app_and_every_process(live):
    live.wait_done(2)
    stopped = live.manage("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    code = live.proc.wait(30)
    assert code != 0
    assert "stopped by pypsmanage" in live.err.read_text()
    assert live.done() < 30
    assert_nothing_left(live.run_id)


def test_top_draws_hosts_tasks_and_elements(live):
    live.wait_done(1)
    result = live.manage("top", "--iterations", "2", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    for word in ("hosts", "tasks", "elements", "sleeper.py", "'jobs'", "state running"):
        assert word in result.stdout


def test_two_runs_at_once_do_not_interfere_and_are_chosen_by_name(bag):
    first = LiveRun(bag, "bag.py", "12", "2.0", PSPROCS="2")
    second = LiveRun(bag, "bag.py", "12", "2.0", PSPROCS="2")
    try:
        assert first.run_id != second.run_id
        ambiguous = subprocess.run(
            [sys.executable, "-m", "pastset.commands.manage", "status"],
            env=first.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ambiguous.returncode == 1 and "choose one with --run" in ambiguous.stderr
        assert first.snapshot("status")["run"] == first.run_id
        assert second.snapshot("status")["run"] == second.run_id
        # Both apps have moved their 12 jobs: each run's element holds its own 12, not 24.
        for run in (first, second):
            deadline = time.monotonic() + 20
            while (jobs := run.element("jobs"))["last"] < 12:
                assert time.monotonic() < deadline, jobs
                time.sleep(0.05)
            assert jobs["last"] == 12, f"run {run.run_id} sees the other run's jobs: {jobs}"
        assert first.proc.wait(30) == 0 and second.proc.wait(30) == 0
        assert first.done() == 12 and second.done() == 12  # each got exactly its own results
    finally:
        first.close()
        second.close()


def test_slots_let_one_client_run_tasks_side_by_side(tmp_path):
    (tmp_path / "stamp.py").write_text(
        "import sys, time, pastset\nstart = time.time()\ntime.sleep(1.0)\n"
        "pastset.PastSet().enter(('span', float, float)).move((start, time.time()))\n"
    )
    (tmp_path / "two.py").write_text(
        "import pastset\np = pastset.PastSet()\np.spawn('stamp.py')\np.spawn('stamp.py')\n"
        "spans = sorted(p.enter(('span', float, float)).observe() for _ in range(2))\n"
        "print('overlap' if spans[1][0] < spans[0][1] else 'sequential')\np.halt()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    cmd = [sys.executable, "-m", "pastset.commands.run", str(tmp_path / "two.py")]
    one = subprocess.run(cmd, env={**env, "PSPROCS": "1"}, capture_output=True, text=True, timeout=60)
    two = subprocess.run(cmd, env={**env, "PSPROCS": "1", "PSSLOTS": "2"}, capture_output=True, text=True, timeout=60)
    assert one.stdout == "sequential\n", one.stderr
    assert two.stdout == "overlap\n", two.stderr


def test_progress_line_goes_to_a_terminal_stderr_only(bag):
    out = bag / "progress-out.txt"
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PSPROCS="2", PSPROGRESS="yes")
    with out.open("w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pastset.commands.run", str(bag / "bag.py"), "10", "0.1"],
            env=env,
            cwd=bag,
            stdout=stdout,
            stderr=terminal,
            start_new_session=True,
        )
    os.close(terminal)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = seen.decode(errors="replace")
    assert "clients 2/2 ready" in text and "dispatched" in text and "finished" in text
    assert out.read_text().splitlines() == [f"done {i}" for i in range(1, 11)]  # stdout untouched


def test_progress_line_stays_off_when_stderr_is_not_a_terminal(bag):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PSPROCS="2", PSPROGRESS="yes")
    result = subprocess.run(
        [sys.executable, "-m", "pastset.commands.run", str(bag / "bag.py"), "4", "0.05"],
        env=env,
        cwd=bag,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "dispatched" not in result.stderr


def test_a_silent_client_is_given_up_on_and_its_task_reported_failed(bag):
    run = LiveRun(bag, "bag.py", "40", "0.2", PSPROCS="2", PSDEADTIME="2")
    try:
        run.wait_done(2)
        victim = next(c for c in run.snapshot("clients") if c["running"])
        os.kill(victim["pid"], signal.SIGSTOP)  # alive, connected, but silent: like a hung host
        try:
            start = time.monotonic()
            while True:
                clients = {c["id"]: c for c in run.snapshot("clients")}
                if not clients[victim["id"]]["alive"]:
                    break
                assert time.monotonic() - start < 10
                time.sleep(0.2)
            detected = time.monotonic() - start
            tasks = {t["id"]: t for t in run.snapshot("tasks")}
            assert tasks[victim["running"][0]]["state"] == "failed"
            assert "no heartbeat" in tasks[victim["running"][0]]["stderr_tail"]
            assert detected < 5
        finally:
            os.kill(victim["pid"], signal.SIGCONT)
        # Woken, the client hears at its next heartbeat that the run gave up on it, and stops.
        deadline = time.monotonic() + 4 * 2  # a few heartbeats (PSDEADTIME / 4 apart)
        while alive(victim["pid"]):
            assert time.monotonic() < deadline, "a client the run gave up on went on running"
            time.sleep(0.05)
        assert run.snapshot("status")["state"] == "running"  # the run itself goes on
    finally:
        run.close()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_nothing_left(run_id: str) -> None:
    deadline = time.monotonic() + 10
    while run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_processes(run_id) == []
