"""The benchmark runs, as CI's smoke test: tiny sizes, every measure, nothing left running.

Speed is never asserted here (timings on a shared 2-core machine drift); what is
checked is that ``bench/run.py --quick`` starts its own pastset server,
redis-server and bare Pyro5 server, produces a row for each of P1-P7 and the journal cost J with a
number in it, and stops everything it started.  ``tests/run`` installs Debian's
redis-server when run as root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def redis_servers() -> set[int]:
    return {pid for pid, cmd in processes_mentioning("redis-server") if cmd.startswith("redis-server")}


def test_quick_bench_reports_every_measure_and_leaves_nothing_running() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: run tests/run as root or sudo sh tests/infra/apt-install.sh redis-server")
    before = redis_servers()
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| P", "| J"))]
    assert {row.split("|")[1].strip() for row in rows} == {*(f"P{i}" for i in range(1, 8)), "J"}
    assert not [row for row in rows if "ERROR" in row], rows
    # Each headline row compares a measured pastset figure with a measured Redis one.
    for mid in ("P1", "P2", "P3", "P7"):
        headline = next(row for row in rows if row.startswith(f"| {mid} ") and "Redis" in row)
        assert re.search(r"\| \d+\.\d\dx \|", headline), headline
    assert "wrote" not in done.stderr, "a --quick run must not overwrite bench/RESULTS.md"
    assert redis_servers() <= before, "the bench left a redis-server running"
    assert [p for p in processes_mentioning("pastset.commands.server") if "bench" in p[1]] == []
