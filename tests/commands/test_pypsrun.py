"""pypsrun end to end: exit statuses, crashes, Ctrl-C, output, and no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_processes

from pastset.commands import run as pypsrun

pytestmark = pytest.mark.timeout(120)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def pypsrun_cmd(app: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pastset.commands.run", str(app), *args]


def run(app: Path, *args: str, procs: int | None = 1, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ)
    for key in ("PSNS", "PSRUN", "PSTASK", "PSHOSTS", "PSMASTER"):
        environ.pop(key, None)
    if procs is not None:
        environ["PSPROCS"] = str(procs)
    environ.update(env)
    return subprocess.run(
        pypsrun_cmd(app, *args), env=environ, cwd=app.parent, capture_output=True, text=True, timeout=timeout
    )


def run_ids(stderr_or_path: str) -> list[str]:
    return [line.split()[-1] for line in stderr_or_path.splitlines() if line.startswith("RUN ")]


def assert_nothing_left(run_id: str) -> None:
    deadline = time.monotonic() + 5
    while run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_processes(run_id) == []


PRINT_RUN = "import os, sys\nprint('RUN', os.environ['PSRUN'], file=sys.stderr, flush=True)\n"


def test_exit_status_of_the_app_is_pypsrun_s(tmp_path):
    app = write(tmp_path, "three.py", PRINT_RUN + "import pastset\npastset.PastSet()\nraise SystemExit(3)\n")
    result = run(app)
    assert result.returncode == 3
    assert_nothing_left(run_ids(result.stderr)[0])


def test_crashing_app_fails_the_run_and_leaves_nothing(tmp_path):
    write(tmp_path, "waiter.py", "import pastset\npastset.PastSet().enter(('never', int)).observe()\n")
    app = write(
        tmp_path,
        "crash.py",
        PRINT_RUN
        + (
            "import pastset\np = pastset.PastSet()\np.spawn('waiter.py')\np.spawn('waiter.py')\n"
            "import time; time.sleep(0.3)\nraise RuntimeError('app went wrong')\n"
        ),
    )
    result = run(app, procs=2)
    assert result.returncode == 1
    assert "RuntimeError: app went wrong" in result.stderr
    assert result.stderr.count("Traceback") == 1  # the app's own; the waiting tasks exit quietly
    assert_nothing_left(run_ids(result.stderr)[0])


def test_app_that_never_halts_still_ends_everything(tmp_path):
    write(
        tmp_path,
        "worker.py",
        "import pastset\np = pastset.PastSet()\nwhile True:\n    p.enter(('jobs', int)).observe()\n",
    )
    app = write(
        tmp_path,
        "nohalt.py",
        PRINT_RUN + ("import pastset\np = pastset.PastSet()\nfor _ in range(3): p.spawn('worker.py')\nprint('done')\n"),
    )
    result = run(app, procs=3)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert "Traceback" not in result.stderr
    assert_nothing_left(run_ids(result.stderr)[0])


def test_spawned_output_is_not_lost_and_work_is_finished(tmp_path):
    write(
        tmp_path,
        "talker.py",
        (
            "import sys, time\nn = int(sys.argv[1])\ntime.sleep(0.2)\n"
            "for i in range(200): print(f'task {n} line {i}')\n"
            "print(f'task {n} err', file=sys.stderr)\n"
        ),
    )
    app = write(
        tmp_path,
        "spawner.py",
        PRINT_RUN + ("import pastset\np = pastset.PastSet()\nfor n in range(4): p.spawn('talker.py', [n])\np.halt()\n"),
    )
    result = run(app, procs=2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == sorted(f"task {n} line {i}" for n in range(4) for i in range(200))
    for n in range(4):  # each task's own lines stay in order
        mine = [line for line in lines if line.startswith(f"task {n} ")]
        assert mine == [f"task {n} line {i}" for i in range(200)]
        assert f"task {n} err" in result.stderr
    assert_nothing_left(run_ids(result.stderr)[0])


def test_tasks_still_computing_when_app_exits_are_waited_for(tmp_path):
    write(
        tmp_path,
        "slow.py",
        (
            "import pastset, time\np = pastset.PastSet()\ntime.sleep(1.0)\n"
            "print('slow task finished', flush=True)\n"
            "p.enter(('next', int)).observe()\n"  # then blocks for good: the run may end
        ),
    )
    app = write(tmp_path, "quick.py", PRINT_RUN + "import pastset\npastset.PastSet().spawn('slow.py')\n")
    result = run(app)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "slow task finished\n"
    assert "Traceback" not in result.stderr


def test_failed_task_is_reported(tmp_path):
    write(tmp_path, "bad.py", "raise SystemExit('bad task says no')\n")
    app = write(tmp_path, "spawnbad.py", "import pastset\np = pastset.PastSet()\np.spawn('bad.py')\np.halt()\n")
    result = run(app)
    assert result.returncode == 0
    assert "bad task says no" in result.stderr
    assert "failed with status 1" in result.stderr


def test_sigint_ends_the_run_with_130_and_no_spew(tmp_path):
    write(tmp_path, "waiter.py", "import pastset\npastset.PastSet().enter(('never', int)).observe()\n")
    ready = tmp_path / "ready"
    app = write(
        tmp_path,
        "sleeper.py",
        PRINT_RUN
        + (
            "import pastset, time, pathlib\np = pastset.PastSet()\np.spawn('waiter.py')\np.spawn('waiter.py')\n"
            f"pathlib.Path({str(ready)!r}).write_text('x')\ntime.sleep(60)\n"
        ),
    )
    env = dict(os.environ, PSPROCS="2")
    for key in ("PSNS", "PSRUN", "PSTASK"):
        env.pop(key, None)
    proc = subprocess.Popen(
        pypsrun_cmd(app),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # let the spawned waiters block
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.count("Traceback") <= 1  # at most the app's own KeyboardInterrupt
    assert "waiter.py" not in err
    assert_nothing_left(run_ids(err)[0])


def test_sigkill_of_pypsrun_takes_the_whole_run_down(tmp_path):
    write(tmp_path, "waiter.py", "import pastset\npastset.PastSet().enter(('never', int)).observe()\n")
    ready = tmp_path / "ready"
    app = write(
        tmp_path,
        "sleeper.py",
        (
            "import pastset, time, pathlib, os\np = pastset.PastSet()\np.spawn('waiter.py')\n"
            f"time.sleep(0.5)\npathlib.Path({str(ready)!r}).write_text(os.environ['PSRUN'])\ntime.sleep(60)\n"
        ),
    )
    env = dict(os.environ, PSPROCS="1")
    for key in ("PSNS", "PSRUN", "PSTASK"):
        env.pop(key, None)
    proc = subprocess.Popen(pypsrun_cmd(app), env=env, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run_id = ready.read_text()
        assert len(run_processes(run_id)) >= 4  # server, client, task, app
        proc.kill()  # pypsrun itself, no chance to clean up
        proc.wait()
        deadline = time.monotonic() + 15
        while [p for p in run_processes(run_id) if "sleeper.py" not in p[1]]:
            assert time.monotonic() < deadline, run_processes(run_id)
            time.sleep(0.1)
        # The app itself is the user's program and outlives a killed pypsrun, as it would
        # under a shell; pypsclean finds the stale run by its identity and ends it.
        assert [p for p in run_processes(run_id) if "sleeper.py" in p[1]]
        listing = subprocess.run(
            [sys.executable, "-m", "pastset.commands.clean", "--dry-run"], capture_output=True, text=True, timeout=30
        )
        assert run_id in listing.stdout and "would end 1 process" in listing.stdout
        cleaned = subprocess.run(
            [sys.executable, "-m", "pastset.commands.clean"], capture_output=True, text=True, timeout=30
        )
        assert f"{run_id}: ended 1 process" in cleaned.stdout
        assert_nothing_left(run_id)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_app_not_found_is_a_clear_error(tmp_path, capsys):
    assert pypsrun.main([str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert "missing.py" in err and "PSBIN" in err


def test_help_lists_settings_and_config_paths(capsys):
    with pytest.raises(SystemExit) as exit_:
        pypsrun.main(["-h"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("PSBIN", "PSHOSTS", "PSPROCS", "PSLAUNCH", "PSWAITPROCS", "PSCONFHELP", "PSLOGLEVEL"):
        assert name in out
    assert "/etc/pypastset.conf" in out and ".pypastset.conf" in out


def test_hosts_naming_this_machine_run_locally_without_ssh(tmp_path):
    import socket

    hosts = write(tmp_path, "hosts", f"# this machine, three ways\nlocalhost\n{socket.gethostname()}\n127.0.0.1\n")
    app = write(tmp_path, "hello.py", "import pastset\npastset.PastSet()\nprint('hello')\n")
    result = run(app, procs=None, PSHOSTS=str(hosts), PSLOGLEVEL="info", PSSSH="false")  # any ssh use would fail
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\n"
    assert f"clients on: localhost, {socket.gethostname()}, 127.0.0.1" in result.stderr


def test_unreachable_host_fails_within_seconds_naming_it(tmp_path):
    hosts = write(tmp_path, "hosts", "localhost\n127.0.0.2\n")  # loopback, but no sshd there
    app = write(tmp_path, "a.py", "print('should not run')\n")
    start = time.monotonic()
    result = run(app, procs=None, PSHOSTS=str(hosts))
    assert time.monotonic() - start < 20
    assert result.returncode != 0
    assert "127.0.0.2" in result.stderr and "cannot connect" in result.stderr
    assert "should not run" not in result.stdout


def test_malformed_hosts_file_names_file_and_line(tmp_path):
    hosts = write(tmp_path, "hosts", "localhost\nnode slots=many\n")
    app = write(tmp_path, "a.py", "print('should not run')\n")
    result = run(app, PSHOSTS=str(hosts))
    assert result.returncode == 2
    assert f"{hosts}:2:" in result.stderr


def test_more_workers_than_slots_and_halt_ends_the_run(tmp_path):
    """pyPastSet's mcpiserver idiom on one client: two workers spawned, the jobs done by the first,
    halt. The second can never start (its only slot holds a worker blocked for good), so the run
    ends at once, saying it never ran, instead of hanging until someone presses Ctrl-C."""
    write(
        tmp_path,
        "worker.py",
        "import pastset\np = pastset.PastSet()\njobs, res = p.enter(('j', int)), p.enter(('r', int))\n"
        "while True:\n    (n,) = jobs.observe()\n    res.move((n * n,))\n",
    )
    app = write(
        tmp_path,
        "master.py",
        PRINT_RUN + "import pastset\np = pastset.PastSet()\njobs, res = p.enter(('j', int)), p.enter(('r', int))\n"
        "for i in range(5):\n    jobs.move((i,))\n"
        "for _ in range(2):\n    p.spawn('worker.py', '')\n"
        "print(sorted(res.observe()[0] for _ in range(5)))\np.halt()\n",
    )
    start = time.monotonic()
    done = run(app, procs=1, timeout=60)
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 1, 4, 9, 16]"
    assert "1 spawned task(s) never ran: worker.py" in done.stderr
    assert took < 30, f"the run took {took:.1f} s to end"
    assert_nothing_left(run_ids(done.stderr)[0])
