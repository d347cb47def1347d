"""The benchmark runs, as CI's smoke test: tiny sizes, every measure, nothing left running.

Speed is never asserted here (timings on a shared 2-core machine drift); what is
checked is that ``bench/run.py --quick`` starts its own pastset server,
redis-server and bare Pyro5 server, produces a row for each of P1-P7 and the journal cost J with a
number in it, and stops everything it started.  ``tests/run`` installs Debian's
redis-server when run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import session_processes, wait_until_gone

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_quick_bench_reports_every_measure_and_leaves_nothing_running() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run tests/run as root or sudo sh tests/infra/apt-install.sh redis-server")
    # In a session of its own: every server the bench starts inherits it, so what is left in
    # that session afterwards is exactly what the bench left running (and nothing of anyone else's).
    bench = subprocess.Popen(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=240)
        left = wait_until_gone(lambda: session_processes(bench.pid), 10)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        for pid, _ in session_processes(bench.pid):  # only what the bench started
            os.kill(pid, signal.SIGKILL)
    done = subprocess.CompletedProcess(bench.args, bench.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| P", "| J"))]
    assert {row.split("|")[1].strip() for row in rows} == {*(f"P{i}" for i in range(1, 8)), "J"}
    assert not [row for row in rows if "ERROR" in row], rows
    # Each headline row compares a measured pastset figure with a measured Redis one.
    for mid in ("P1", "P2", "P3", "P7"):
        headline = next(row for row in rows if row.startswith(f"| {mid} ") and "Redis" in row)
        assert re.search(r"\| \d+\.\d\dx \|", headline), headline
    assert "wrote" not in done.stderr, "a --quick run must not overwrite bench/RESULTS.md"
    assert left == [], f"the bench left processes running: {left}"
