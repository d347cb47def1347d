"""The client process (pastset.launch.worker, pypsclient): it ends when told, however often it is told.

Each test starts a real server (conftest's ``server``) and a real ``pypsclient``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import pastset

SLEEPER = """
import os, sys, time
open(sys.argv[1], "w").write(str(os.getpid()))
print("started", flush=True)
for i in range(10000):
    print(f"line {i}", file=sys.stderr, flush=True)  # keeps the client's forwarding busy
    time.sleep(0.001)
"""


@pytest.mark.parametrize("burst", [1, 5, 200, 2000])
def test_a_burst_of_sigterms_ends_the_client_and_its_task(server, tmp_path, burst):
    (server.psbin / "sleeper.py").write_text(SLEEPER)
    client = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.client", "--run", server.run, "--ns", server.address],
        env=server.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    marker = tmp_path / "task.pid"
    try:
        pastset.PastSet().spawn("sleeper.py", [str(marker)])
        deadline = time.monotonic() + 30
        while not marker.exists() or not marker.read_text():
            assert client.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        task = int(marker.read_text())
        time.sleep(0.2)
        for _ in range(burst):  # pypsrun's stop, the lifeline and a lost scheduler can all signal at once
            if client.poll() is not None:
                break
            os.kill(client.pid, signal.SIGTERM)
            time.sleep(0.0003 if burst < 1000 else 0.00005)  # apart: later ones land while the first is handled
        # It ends (0, or the default action of a SIGTERM that lands during interpreter exit), never hangs.
        assert client.wait(15) in (0, -signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{task}") and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(f"/proc/{task}/stat") if os.path.exists(f"/proc/{task}") else open(os.devnull) as stat:
            assert stat.read().rpartition(")")[2].split()[:1] in ([], ["Z"]), "the task outlived its client"
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()


RUNS_UNTIL_STOPPED = """
import sys, time
open(sys.argv[1], "w").write("running")
while True:
    time.sleep(0.05)
"""


def test_a_heartbeat_after_the_run_ended_is_no_warning(server, tmp_path):
    """The end of a run is not being given up on: no 'given up on' warning, exit status 0.

    The race seen on loaded machines: the run ends (a correct answer, then
    finish) and the client's heartbeat comes before its next_task learns of it.
    Here the task is still running when the run ends, so the heartbeat always
    comes first.
    """
    from pastset.core.naming import scheduler_name
    from pastset.transport.proxies import lookup, proxy

    (server.psbin / "busy.py").write_text(RUNS_UNTIL_STOPPED)
    client = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.client", "--run", server.run, "--ns", server.address],
        env=server.env(PSDEADTIME="0.4", PSLOGLEVEL="info"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    marker = tmp_path / "busy.marker"
    try:
        pastset.PastSet().spawn("busy.py", [str(marker)])
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert client.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with proxy(lookup(server.address, scheduler_name(server.run))) as sched:
            sched.finish(False, None)  # the run ends while the task still runs
        _, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
    assert "given up on" not in err, err
    assert "the run has ended" in err  # the heartbeat did come after the end, and was told so
    assert client.returncode == 0, err
