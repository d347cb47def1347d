"""pypsitems: items exactly once, results and logs in the experiment directory, resumable;
and across three hosts in copy mode with a worker killed, a pause, and a stop and restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_processes

from pastset.entrypoints import MODULES

pytestmark = pytest.mark.timeout(240)

#: host names and namespaces of this copy of the suite only (another copy may run at once)
PREFIX = f"i{uuid.uuid4().hex[:5]}"


def pypsitems(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pastset.commands.items", *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(folder: Path) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_text()) for p in (folder / "results").glob("*.json")}


def experiment(base: Path) -> Path:
    (found,) = [p for p in base.iterdir() if p.is_dir()]
    return found


def test_files_lines_and_ranges_each_item_once(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(20):
        (data / f"f{i}.txt").write_text("x" * i)
    (data / "sub" / "deep.txt").write_text("deep")
    base = tmp_path / "exp"
    done = pypsitems("--files", str(data), "--results", str(base), "--", "wc", "-c", cwd=tmp_path, PSPROCS="3")
    assert done.returncode == 0, done.stderr
    got = results(experiment(base))
    assert len(got) == 20  # not recursive: the file in sub/ is not an item
    for r in got.values():
        size = int(Path(r["item"]).name[1:-4])
        assert r["status"] == 0 and r["stdout"].split()[0] == str(size)
    assert "20 done, 0 failed" in done.stderr
    recursive = pypsitems(
        "--files", str(data), "--recursive", "--results", str(tmp_path / "exp2"), "--", "cat", cwd=tmp_path, PSPROCS="2"
    )
    assert recursive.returncode == 0 and "21 done" in recursive.stderr

    lines = tmp_path / "words"
    lines.write_text("alpha\nbeta\n\ngamma\n")
    out = pypsitems(
        "--lines", str(lines), "--results", str(tmp_path / "exp3"), "--", "echo", "word:{}", cwd=tmp_path, PSPROCS="2"
    )
    assert out.returncode == 0
    assert sorted(r["stdout"] for r in results(experiment(tmp_path / "exp3")).values()) == [
        "word:alpha\n",
        "word:beta\n",
        "word:gamma\n",
    ]

    frames = pypsitems(
        "--range",
        "1-30",
        "--chunk",
        "7",
        "--results",
        str(tmp_path / "exp4"),
        "--",
        "echo",
        "frames",
        "{start}",
        "{end}",
        cwd=tmp_path,
        PSPROCS="2",
    )
    assert frames.returncode == 0
    assert sorted(r["stdout"] for r in results(experiment(tmp_path / "exp4")).values()) == sorted(
        ["frames 1 7\n", "frames 8 14\n", "frames 15 21\n", "frames 22 28\n", "frames 29 30\n"]
    )


def test_a_python_function_over_items(tmp_path):
    (tmp_path / "analyse.py").write_text("def square(item):\n    return int(item) ** 2\n")
    numbers = tmp_path / "numbers"
    numbers.write_text("\n".join(map(str, range(12))))
    done = pypsitems(
        "--lines",
        str(numbers),
        "--function",
        "analyse:square",
        "--results",
        str(tmp_path / "e"),
        cwd=tmp_path,
        PSPROCS="2",
        PSBIN=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(int(r["stdout"]) for r in results(experiment(tmp_path / "e")).values()) == [n * n for n in range(12)]


def _tallies(base: Path) -> list[dict[str, int]]:
    """``pypsmanage logs --json``: each experiment's items, done, failed and left."""
    listing = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "logs", "--json", "--results", str(base)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [{k: row[k] for k in ("items", "done", "failed", "left")} for row in json.loads(listing.stdout)]


def test_failures_are_reported_and_a_rerun_does_only_what_is_left(tmp_path):
    lines = tmp_path / "items"
    lines.write_text("\n".join(f"{i}" for i in range(30)))
    marker = tmp_path / "fixed"
    script = f"test $(( {{}} % 7 )) -ne 3 || test -e {marker}"
    base = tmp_path / "exp"
    first = pypsitems("--lines", str(lines), "--shell", "--results", str(base), "--", script, cwd=tmp_path, PSPROCS="2")
    assert first.returncode == 1
    assert "26 done, 4 failed" in first.stderr and "failed items: " in first.stderr
    folder = experiment(base)
    assert sum(1 for r in results(folder).values() if r["status"] != 0) == 4
    assert "failed with status 1" in (folder / "run.log").read_text()
    assert _tallies(base) == [{"items": 30, "done": 26, "failed": 4, "left": 0}]
    marker.write_text("")
    second = pypsitems(
        "--lines", str(lines), "--shell", "--results", str(base), "--", script, cwd=tmp_path, PSPROCS="2"
    )
    assert second.returncode == 0, second.stderr
    assert "4 done, 0 failed, 0 retried, 26 skipped" in second.stderr
    assert all(r["status"] == 0 for r in results(folder).values())
    runs = {log.name.split("-")[0] for log in (folder / "sessions").glob("*.log")}
    assert runs == {"run1", "run2"}, "each run's sessions have their own logs, named by run"
    listing = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "logs", "--results", str(base)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert folder.name in listing.stdout and "30" in listing.stdout
    assert _tallies(base) == [{"items": 30, "done": 30, "failed": 0, "left": 0}], "counted over both runs"
    shown = subprocess.run(
        [sys.executable, "-m", "pastset.commands.manage", "logs", folder.name, "--results", str(base)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "start: 30 items, 26 already done, 4 to do" in shown.stdout
    assert shown.stdout.count("session ") >= 2


def test_bad_arguments_are_clear(tmp_path):
    assert "exactly one item source" in pypsitems("--", "true", cwd=tmp_path).stderr
    assert "either -- COMMAND" in pypsitems("--range", "1-3", cwd=tmp_path).stderr
    assert "FIRST-LAST" in pypsitems("--range", "x", "--", "true", cwd=tmp_path).stderr
    assert "not a directory" in pypsitems("--files", str(tmp_path / "nope"), "--", "true", cwd=tmp_path).stderr


# ------------------------------------------------------------ three hosts
@pytest.mark.netns
def test_500_files_on_three_hosts_copy_mode_kill_pause_stop_restart(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "infra"))
    from netns_hosts import NetnsHosts

    data = tmp_path / "data"
    data.mkdir()
    for i in range(500):
        (data / f"item{i:03d}.txt").write_text(f"content of item {i}\n")
    base = tmp_path / "exp"
    command = [
        "--files",
        str(data),
        "--results",
        str(base),
        "--shell",
        "--",
        "sleep 0.03; tr a-z A-Z < {} > upper.txt; cat upper.txt; pwd",
    ]
    with NetnsHosts(n=3, prefix=PREFIX) as hosts:
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        shutil.copy(hosts.ssh_config, home / ".ssh" / "config")
        (home / "hosts").write_text("".join(f"{h.name}\n" for h in hosts))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
        environ.update(HOME=str(home), PSHOSTS=str(home / "hosts"), XDG_RUNTIME_DIR=str(tmp_path / "rt"))

        def start() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "pastset.commands.items", *command],
                env=environ,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )

        def manage(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "pastset.commands.manage", *args],
                env=environ,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        def count() -> int:
            return len(list(base.glob("*/results/*.json")))

        def wait_for(predicate, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                assert time.monotonic() < deadline, f"not reached in {timeout} s; {count()} results"
                time.sleep(0.05)

        proc = start()
        try:
            wait_for(lambda: count() >= 40)
            (record,) = [json.loads(f.read_text()) for f in (tmp_path / "rt").glob("**/runs/*.json")]
            run_id = record["run"]

            def element(name: str) -> dict:
                (row,) = [e for e in json.loads(manage("elements", "--json", "--run", run_id)) if name in e["template"]]
                return row

            assert element("pypsitems.job")["last"] == 500  # every item moved once, no hand-back yet
            # a worker of this run is killed mid-item: the item it holds is handed back, in this same run
            victims = [pid for pid, cmd in run_processes(run_id) if MODULES["items_worker"] in cmd]
            assert victims
            os.kill(victims[0], signal.SIGKILL)
            wait_for(lambda: element("pypsitems.job")["last"] == 501)  # its leased item, as a new tuple

            # pause: once the items in hand are done, no worker takes another
            assert "paused" in manage("pause", "--run", run_id)
            taken = element("pypsitems.job")["first"]

            def blocked() -> int:
                return sum(e["blocked"] for e in json.loads(manage("elements", "--json", "--run", run_id)))

            # every worker left, and the app, end up blocked (in copy mode an item in hand waits for
            # its paused staging reply): from then on nothing can move while the pause lasts
            wait_for(lambda: blocked() >= len(victims))
            assert element("pypsitems.job")["first"] == taken, "a worker took an item while the run was paused"
            held = count()
            assert "resumed" in manage("resume", "--run", run_id)
            wait_for(lambda: count() >= held + 40)
            # stop in the middle ...
            assert "stopped" in manage("stop", "--run", run_id)
            proc.wait(60)
            assert proc.returncode != 0
            partial = count()
            assert 0 < partial < 500
            # ... and start again with the same arguments: only the rest is done
            again = start()
            _, err = again.communicate(timeout=180)
            assert again.returncode == 0, err
            assert f"{partial} skipped" in err and "copying files over SFTP" in err
        finally:
            for p in (proc,):
                if p.poll() is None:
                    os.killpg(p.pid, 9)
                    p.wait()
    folder = experiment(base)
    got = results(folder)
    assert sorted(got) == list(range(500))  # every item has a result
    for index, r in got.items():
        item = Path(r["item"])
        expected = item.read_text().upper()
        assert r["status"] == 0
        lines = r["stdout"].splitlines()
        assert lines[0] + "\n" == expected  # computed from the item's content, on a node
        assert lines[1].startswith("/tmp/pastset-items-")  # in a work directory the file was copied to
        assert (folder / "outputs" / str(index) / "upper.txt").read_text() == expected  # copied back
        assert r["host"].startswith(f"{PREFIX}-h")
    logged = Counter()
    for log in (folder / "sessions").glob("*.log"):
        for line in log.read_text().splitlines():
            logged[int(line.split()[3])] += 1
    assert all(logged[i] == 1 for i in range(500)), "an item's result was recorded twice"
    assert len({r["host"] for r in got.values()}) == 3


def test_ctrl_c_keeps_what_is_done_says_how_to_finish_and_a_rerun_does_the_rest(tmp_path):
    lines = tmp_path / "items"
    lines.write_text("\n".join(str(i) for i in range(60)))
    base = tmp_path / "exp"
    args = ["--lines", str(lines), "--shell", "--results", str(base), "--", "sleep 0.1; echo {}"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ["PSPROCS"] = "2"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.items", *args],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(base.glob("*/results/*.json")) or len(list(base.glob("*/results/*.json"))) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert "Run the same command again to do only the rest" in err
    (first,) = _tallies(base)
    assert 5 <= first["done"] < 60 and first["failed"] == 0
    second = pypsitems(*args, cwd=tmp_path, PSPROCS="2")
    assert second.returncode == 0, second.stderr
    assert f"{60 - first['done']} done, 0 failed, 0 retried, {first['done']} skipped" in second.stderr
    assert _tallies(base) == [{"items": 60, "done": 60, "failed": 0, "left": 0}]
