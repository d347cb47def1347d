"""Every command answers -h; ``pypsmanage runs`` lists a live run; run files are private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BIN = Path(__file__).resolve().parent.parent.parent / "bin"
COMMANDS = sorted(p.name for p in BIN.iterdir() if p.name.startswith("pyps"))


def test_every_command_is_there() -> None:
    assert len(COMMANDS) >= 8, COMMANDS


@pytest.mark.parametrize("command", [*COMMANDS, "pypsitems"])
def test_every_command_answers_h(command: str) -> None:
    argv = (
        [sys.executable, "-m", "pastset.commands.items"] if command == "pypsitems" else [sys.executable, BIN / command]
    )
    done = subprocess.run([*argv, "-h"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "-h, --help" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def test_pypsmanage_runs_lists_a_live_run_and_its_files_are_private(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    go = tmp_path / "go"
    app = tmp_path / "app.py"
    app.write_text(
        "import os, pathlib, time, pastset\n"
        "p = pastset.PastSet()\n"
        f"pathlib.Path({str(tmp_path / 'run')!r}).write_text(os.environ['PSRUN'])\n"
        f"while not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    env.update(PSPROCS="1", PSWEB="0", XDG_RUNTIME_DIR=str(runtime))
    run = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.run", str(app)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1]
            time.sleep(0.05)
        run_id = (tmp_path / "run").read_text()
        listing = subprocess.run(
            [sys.executable, BIN / "pypsmanage", "runs", "--json"], env=env, capture_output=True, text=True, timeout=30
        )
        assert listing.returncode == 0, listing.stderr
        (row,) = json.loads(listing.stdout)
        assert row["run"] == run_id and row["alive"] is True and row["pid"] == run.pid
        assert row["app"] == str(app) and row["ns"].startswith("127.0.0.1:")
        assert "secret" not in row and "secret" not in listing.stdout
        table = subprocess.run(
            [sys.executable, BIN / "pypsmanage", "runs"], env=env, capture_output=True, text=True, timeout=30
        )
        assert table.stdout.splitlines()[0].split()[:2] == ["RUN", "ALIVE"] and run_id in table.stdout
        files = [p for p in runtime.rglob("*") if p.is_file()]
        assert any(p.name == f"{run_id}.json" for p in files), files
        for path in files:  # the run file holds the secret: only its owner may read it
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        go.write_text("")
        assert run.wait(60) == 0, run.communicate()[1]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, 9)
            run.wait()
