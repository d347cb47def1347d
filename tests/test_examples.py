"""Every example runs end to end through pypsrun and prints what its docstring says.

Each test starts a real run (``python -m pastset.commands.run``, what the
``pypsrun`` script does) as a subprocess with its own server, clients and spawned
tasks, and checks the application's output line by line.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import STORES, store_url

import pastset

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Applications a test runs with pypsrun, and the files they use (spawned tasks,
# X-function modules), which run only through them.
APPS = {
    "simple.py",
    "mcpiserver.py",
    "ping.py",
    "tracer.py",
    "spawntest.py",
    "xsimple.py",
    "xtimestampapp.py",
    "xpriorityapp.py",
}
COMPANIONS = {
    "mcpiclient.py": "mcpiserver.py",
    "pong.py": "ping.py",
    "spawnclient.py": "spawntest.py",
    "xtypecast.py": "xsimple.py",
    "xtimestamp.py": "xtimestampapp.py",
    "xpriority.py": "xpriorityapp.py",
}
ASCTIME = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def pypsrun(tmp_path: Path, app: str, *args: object, procs: int = 1, store: str = "") -> list[str]:
    """Run ``pypsrun examples/APP ARGS`` with PSPROCS=procs (and PSSTORE=store); return its stdout lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}  # no settings of another run
    env["PSPROCS"] = str(procs)
    env["PSSTORE"] = store
    cmd = [sys.executable, "-m", "pastset.commands.run", str(EXAMPLES / app), *map(str, args)]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    report = f"{app} {args} took {took:.2f}s, exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    print(report)
    assert done.returncode == 0, report
    assert "Traceback" not in done.stderr, report
    return done.stdout.splitlines()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    """The examples that need no X-function run on every store: the built-in server, Redis, a Redis Cluster."""
    return store_url(request, request.param)


def test_the_basic_examples_are_there_and_each_companion_has_its_app() -> None:
    # That every file in examples/ is run by some test is checked in test_teaching.py,
    # which knows both lists.
    on_disk = {path.name for path in EXAMPLES.glob("*.py")}
    assert APPS | set(COMPANIONS) <= on_disk
    assert set(COMPANIONS.values()) <= APPS


@pytest.mark.parametrize("name", sorted(APPS | set(COMPANIONS)))
def test_example_says_what_it_teaches_and_how_to_run_it(name: str) -> None:
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert doc, f"{name} has no module docstring"
    if name in APPS:
        assert f"pypsrun examples/{name}" in doc
    else:
        assert COMPANIONS[name] in doc, f"{name} should name the application that uses it"


def test_simple(tmp_path: Path, store: str) -> None:
    assert pypsrun(tmp_path, "simple.py", store=store) == ["0 1", "(42, 3.14)", "1 1"]


def test_mcpi_bag_of_tasks(tmp_path: Path, store: str) -> None:
    lines = pypsrun(tmp_path, "mcpiserver.py", 2, 20, 20000, procs=2, store=store)
    assert len(lines) == 1, lines
    found = re.fullmatch(r"Pi is found as (\d+\.\d+) with 2 worker\(s\), 20 bag\(s\) and bagsize of 20000", lines[0])
    assert found, lines
    assert abs(float(found.group(1)) - 3.14159) < 0.1


@pytest.mark.parametrize("rounds", [None, 3])
def test_ping_pong(tmp_path: Path, rounds: int | None, store: str) -> None:
    lines = pypsrun(tmp_path, "ping.py", *([] if rounds is None else [rounds]), store=store)
    rounds = rounds or 10
    assert lines[:-1] == [f"ping: round trip {n}: sent {n - 1}, got {n}" for n in range(1, rounds + 1)]
    assert re.fullmatch(rf"ping: {rounds} round trips, counter is {rounds} \(\d+\.\d+ s, .*\)", lines[-1])


@pytest.mark.parametrize("n", [10, 5])
def test_tracer_replays_history_then_axe_expires_it(tmp_path: Path, n: int, store: str) -> None:
    lines = pypsrun(tmp_path, "tracer.py", *([] if n == 10 else [n]), store=store)
    taken = n - 2  # the tracer leaves two tuples unobserved
    share = taken // 2

    consumers = [re.fullmatch(r"consumer (a|b) took (\[.*\])", line) for line in lines[:2]]
    assert all(consumers), lines[:2]
    got = {m.group(1): ast.literal_eval(m.group(2)) for m in consumers if m}
    assert len(got["a"]) == share and len(got["b"]) == taken - share
    assert sorted(got["a"] + got["b"]) == list(range(taken))  # each tuple to exactly one consumer
    assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])  # each sees them in order

    history = [f"history {i}: ('trace', {i}, 'job-{i}') {'taken' if i < taken else 'waiting'}" for i in range(n)]
    assert lines[2 : n + 4] == [
        f"before replay: first={taken} last={n}",
        *history,
        f"after replay: first={taken} last={n}",  # indexed observe left first alone
    ]
    rest = lines[n + 4 :]
    assert len(rest) == 2, lines
    assert rest[0].startswith("observe(0) after axe: expired: tuple 0 of element ('trace',"), rest[0]
    assert rest[0].endswith(f"the oldest tuple still stored is {taken}"), rest[0]
    assert rest[1] == f"observe({taken}) after axe: ('trace', {taken}, 'job-{taken}')"  # not yet observed: kept


def test_spawn_with_arguments(tmp_path: Path, store: str) -> None:
    assert pypsrun(tmp_path, "spawntest.py", procs=2, store=store) == [
        "spawnclient got []",
        "spawnclient got ['0']",
        "spawnclient got ['0', '1']",
        "spawnclient got ['0', '1', '2']",
        "spawnclient got ['hello', 'world']",
        "spawnclient got ['test', '-1']",
        "spawntest: collected 6 replies from 6 spawns",
    ]


def test_xfunction_typecast_old_style(tmp_path: Path) -> None:
    lines = pypsrun(tmp_path, "xsimple.py")
    assert len(lines) == 3, lines
    assert lines[0] == "('xcast', 7, 2.5)"  # '7' and '2.5' were cast to int and float on the server
    assert lines[1].startswith("refused: X-function 'xtypecast' raised ValueError: invalid literal for int()")
    assert lines[2] == "1 1"  # the refused move stored nothing


def test_xfunction_timestamps_old_style(tmp_path: Path) -> None:
    lines = pypsrun(tmp_path, "xtimestampapp.py")
    assert len(lines) == 3, lines
    labels = ["observe(0) before:", "observe():", "observe(0) after:"]
    before, taken, after = (
        ast.literal_eval(line.removeprefix(label)) for line, label in zip(lines, labels, strict=True)
    )
    assert before[:2] == ("stamp", "hello") and len(before) == 3
    assert taken[:3] == before and len(taken) == 4  # observe stamp appended to the stored tuple
    assert after == taken  # written back with the old private __set_entry hook
    for stamp in taken[2:]:
        assert ASCTIME.match(stamp), stamp
    moved, observed = (time.mktime(time.strptime(stamp)) for stamp in taken[2:])
    assert 0 <= observed - moved < 30


def test_xfunction_priority_new_style(tmp_path: Path) -> None:
    assert pypsrun(tmp_path, "xpriorityapp.py") == [
        "refused: xpriority: position 1 of ('job', 'urgent', 'spam') must be a number (the priority)",
        "priority 5: page-oncall",
        "priority 5: reboot",  # equal priorities: the older first
        "priority 3: build",
        "priority 2: email",
        "priority 1: backup",
        "log in hand-out order: ['page-oncall', 'reboot', 'build', 'email', 'backup']",
    ]


@pytest.mark.pastset(procs=0, psbin=str(EXAMPLES))
def test_xfunction_typecast_driven_from_the_test_itself(pastset_run) -> None:
    """The same X-function as xsimple.py, through the pastset_run fixture: no app file needed."""
    element = pastset_run.enter(("xcast", int, float), xfunction="xtypecast")
    element.move(("xcast", "7", "2.5"))
    assert element.observe() == ("xcast", 7, 2.5)
    with pytest.raises(pastset.XFunctionError, match="invalid literal for int"):
        element.move(("xcast", "seven", "2.5"))
    assert (element.first(), element.last()) == (1, 1)


@pytest.mark.pastset(procs=2, psbin=str(EXAMPLES))
def test_spawnclient_arguments_through_the_fixture(pastset_run) -> None:
    """spawntest.py's companion, spawned straight from a test on the fixture's two clients."""
    replies = pastset_run.enter(("spawned", tuple))
    for args in ("", ["hello", "world"]):
        pastset_run.spawn("spawnclient.py", args)
    got = sorted(replies.observe(timeout=60)[1] for _ in range(2))
    pastset_run.halt()
    assert got == [(), ("hello", "world")]
