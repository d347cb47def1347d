"""The teaching material: the coordination-pattern examples run and prove what they claim, and the docs build.

Each example test starts a real run (``python -m pastset.commands.run``, what
``pypsrun`` does) with its own server, clients and spawned tasks, and checks
the application's output line by line, including the line that proves the
pattern worked (the bound held, nobody left the barrier early, no neighbours
ate together).  The documentation test builds the Sphinx project in ``doc/``
with warnings as errors and checks that its generated reference covers every
setting, command, exception class and example.
"""

from __future__ import annotations

import ast
import configparser
import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_examples import APPS as BASIC_APPS
from test_examples import COMPANIONS as BASIC_COMPANIONS

import pastset.errors
from pastset.settings import SPEC

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The coordination-pattern examples, with how many clients each is run with.
APPS = {
    "pipeline.py": 3,
    "barrier.py": 4,
    "globalsum.py": 4,
    "boundedbuffer.py": 2,
    "matmul.py": 2,
    "philosophers.py": 5,
}
COMPANIONS = {
    "pipestage.py": "pipeline.py",
    "barrierworker.py": "barrier.py",
    "sumworker.py": "globalsum.py",
    "producer.py": "boundedbuffer.py",
    "matworker.py": "matmul.py",
    "philosopher.py": "philosophers.py",
}


def pypsrun(tmp_path: Path, app: str, *args: object, procs: int, status: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``pypsrun examples/APP ARGS`` with PSPROCS=procs; check its status and that nothing crashed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}  # no settings of another run
    env["PSPROCS"] = str(procs)
    cmd = [sys.executable, "-m", "pastset.commands.run", str(EXAMPLES / app), *map(str, args)]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    took = time.monotonic() - start
    report = f"{app} {args} took {took:.2f}s, exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    print(report)
    assert done.returncode == status, report
    assert "Traceback" not in done.stderr, report
    return done


def lines_of(tmp_path: Path, app: str, *args: object, procs: int) -> list[str]:
    return pypsrun(tmp_path, app, *args, procs=procs).stdout.splitlines()


# ------------------------------------------------------------------ conventions
def test_every_example_is_run_by_a_test() -> None:
    on_disk = {path.name for path in EXAMPLES.glob("*.py")}
    ours = set(APPS) | set(COMPANIONS)
    assert ours <= on_disk
    assert not ours & (BASIC_APPS | set(BASIC_COMPANIONS)), "tested twice"
    assert on_disk == ours | BASIC_APPS | set(BASIC_COMPANIONS), "an example no test runs"
    assert set(COMPANIONS.values()) <= set(APPS)


@pytest.mark.parametrize("name", sorted(set(APPS) | set(COMPANIONS)))
def test_example_says_what_it_teaches_and_how_to_run_it(name: str) -> None:
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert doc, f"{name} has no module docstring"
    summary, _, rest = doc.partition("\n\n")
    assert summary.endswith(".") and "\n" not in summary, "a one-line summary first"
    app = COMPANIONS.get(name, name)
    assert f"PSPROCS={APPS[app]} pypsrun examples/{app}" in rest, "the exact run line"
    if name in COMPANIONS:
        assert f"Spawned by {app}" in doc


def test_apps_that_spawn_halt() -> None:
    for name in APPS:
        source = (EXAMPLES / name).read_text()
        assert "pset.spawn(" in source and "pset.halt()" in source, name


# --------------------------------------------------------------------- examples
def test_pipeline(tmp_path: Path) -> None:
    assert lines_of(tmp_path, "pipeline.py", procs=3) == [
        "pipeline: square | inc | double",
        *[f"item {i}: {2 * (i * i + 1)}" for i in range(8)],
        "pipeline: 8 items through 3 stages, in order, all correct",
    ]


def test_pipeline_completes_with_one_client(tmp_path: Path) -> None:
    # Unbounded links: stage 0 runs to the end of the stream, then stage 1, ...
    assert lines_of(tmp_path, "pipeline.py", 3, procs=1) == [
        "pipeline: square | inc | double",
        "item 0: 2",
        "item 1: 4",
        "item 2: 10",
        "pipeline: 3 items through 3 stages, in order, all correct",
    ]


def test_barrier(tmp_path: Path) -> None:
    lines = lines_of(tmp_path, "barrier.py", procs=4)
    assert len(lines) == 4, lines
    for r, line in enumerate(lines[:3]):
        found = re.fullmatch(rf"round {r}: arrival order (\d) (\d) (\d) (\d); every task saw all 4 arrivals", line)
        assert found, line
        assert sorted(map(int, found.groups())) == [0, 1, 2, 3]  # each task arrived once per round
    assert lines[3] == "barrier: 4 tasks x 3 rounds, no task left a round before all had arrived"


def test_barrier_with_too_few_clients_says_so(tmp_path: Path) -> None:
    done = pypsrun(tmp_path, "barrier.py", 2, 1, 3, procs=1, status=1)
    assert done.stdout == ""
    assert re.search(
        r"barrier: only [01] of 2 tasks arrived within 3 s; "
        r"a barrier needs all tasks running at once: run with PSPROCS=2\n",
        done.stderr,
    ), done.stderr


def _sums(workers: int, n: int) -> list[int]:
    shares = [(me * n // workers + 1, (me + 1) * n // workers) for me in range(workers)]
    return [(high * (high + 1) * (2 * high + 1) - (low - 1) * low * (2 * low - 1)) // 6 for low, high in shares]


@pytest.mark.parametrize(("workers", "n"), [(4, 1_000_000), (2, 5_000_000)])
def test_global_sum(tmp_path: Path, workers: int, n: int) -> None:
    args = [] if (workers, n) == (4, 1_000_000) else [workers, n]
    partials = _sums(workers, n)
    total = n * (n + 1) * (2 * n + 1) // 6
    assert sum(partials) == total
    if n == 5_000_000:
        assert max(partials) >= 2**64  # beyond 64 bits: exercises big integers on the wire
    assert lines_of(tmp_path, "globalsum.py", *args, procs=4) == [
        *[f"worker {me}: {partial}" for me, partial in enumerate(partials)],
        f"global sum of i*i for i = 1..{n}: {total}",
        f"formula N(N+1)(2N+1)/6: {total}: ok",
    ]


@pytest.mark.parametrize(("procs", "producers", "items", "delta"), [(2, None, None, None), (1, 3, 5, 2)])
def test_bounded_buffer(
    tmp_path: Path, procs: int, producers: int | None, items: int | None, delta: int | None
) -> None:
    args = [] if producers is None else [producers, items, delta]
    producers, items, delta = producers or 2, items or 12, delta or 4
    lines = lines_of(tmp_path, "boundedbuffer.py", *args, procs=procs)
    total = producers * items
    assert lines[:3] == [
        f"nobody consuming: first=0 last={delta} after 0.5 s, delta={delta}: producers blocked",
        f"consumed {total} tuples, {items} from each of {producers} producers, each in order: True",
        f"largest backlog seen: {delta} <= delta {delta}: True",
    ]
    full = re.fullmatch(rf"the buffer was full before (\d+) of {total} observes", lines[3])
    assert full and 1 <= int(full.group(1)) <= total, lines[3]
    assert len(lines) == 4


@pytest.mark.parametrize(("procs", "args", "expected"), [(2, [], (120, 6, 2)), (3, [50, 7, 3], (50, 7, 3))])
def test_matmul_with_numpy(tmp_path: Path, procs: int, args: list[int], expected: tuple[int, int, int]) -> None:
    n, blocks, workers = expected
    assert lines_of(tmp_path, "matmul.py", *args, procs=procs) == [
        f"C = A @ B for {n}x{n} int64 matrices in {blocks} row blocks by {workers} workers: ok"
    ]


@pytest.mark.parametrize(("procs", "n", "meals"), [(5, 5, 3), (2, 3, 2)])
def test_dining_philosophers(tmp_path: Path, procs: int, n: int, meals: int) -> None:
    args = [] if (n, meals) == (5, 3) else [n, meals]
    lines = lines_of(tmp_path, "philosophers.py", *args, procs=procs)
    assert lines[:-1] == [f"philosopher {who} ate {meals} times" for who in range(n)]
    proof = rf"no two neighbours ever ate at once; at most (\d) of {n} ate together; no deadlock"
    last = re.fullmatch(proof, lines[-1])
    assert last, lines[-1]
    assert 1 <= int(last.group(1)) <= n // 2  # more would mean neighbours shared a fork


# ------------------------------------------------------------------------- docs
def console_scripts() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser.get("options.entry_points", "console_scripts").splitlines()
    return [line.split("=")[0].strip() for line in lines if "=" in line]


def _python_block(page: str, heading: str) -> str:
    """The first python block after ``heading`` on a tutorial page, as a student would copy it."""
    text = (ROOT / "doc" / "tutorial" / page).read_text()
    after = text[text.index(heading) :]
    found = re.search(r"```python\n(.*?)```", after, re.S)
    assert found, f"no python block after {heading!r} in {page}"
    return found.group(1)


def _run_block(tmp_path: Path, code: str, procs: int, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "block.py").write_text(code)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(PSPROCS=str(procs), **env)
    cmd = [sys.executable, "-m", "pastset.commands.run", "block.py"]
    return subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=90)


def test_the_spawn_block_of_the_tasks_page_runs_as_written(tmp_path: Path) -> None:
    done = _run_block(tmp_path, _python_block("tasks.md", "## spawn and halt"), 3, PSBIN=str(EXAMPLES))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["['-v', '10']", "['2', 'double']", "[]"], done.stdout
    assert "Traceback" not in done.stderr


def test_the_timeouts_block_of_the_elements_page_runs_as_written(tmp_path: Path) -> None:
    done = _run_block(tmp_path, _python_block("elements.md", "## Timeouts"), 1)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no result within 3 s\n"


def test_docs_build_without_warnings_and_cover_the_code(tmp_path: Path) -> None:
    out = tmp_path / "html"
    sphinx = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-d", str(tmp_path / "cache")]
    done = subprocess.run(
        [*sphinx, "doc", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "WARNING" not in done.stderr, done.stderr

    settings = (out / "reference" / "settings.html").read_text()
    rows = [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", settings, re.S)
    ]
    assert [row for row in rows if row] == [
        [name, meaning, default or "(empty)"] for name, (_, default, meaning) in SPEC.items()
    ], "the settings table differs from pastset.settings.SPEC"

    commands = (out / "reference" / "commands.html").read_text()
    for command in console_scripts():
        assert f'<section id="{command}">' in commands, f"command {command} has no section"
        assert f"{command} [-h]" in commands, f"usage of {command} was not generated"

    errors = (out / "errors.html").read_text()
    for name in pastset.errors.__all__:
        assert f'id="pastset.{name}"' in errors, f"exception {name} is not on the errors page"

    examples = (out / "reference" / "examples.html").read_text()
    for path in EXAMPLES.iterdir():
        if path.suffix in (".py", ".sbatch", ".qsub"):
            assert path.name in examples, f"examples/{path.name} is not on the examples page"

    api = (out / "reference" / "api.html").read_text()
    for member in ("pastset.PastSet.enter", "pastset.ElementHandle.observe", "pastset.element.Element.set_entry"):
        assert f'id="{member}"' in api, member

    notebook = html.unescape(re.sub(r"<[^>]+>", "", (out / "tutorial" / "notebook.html").read_text()))
    for shown in ("pastset.local(procs=2", "bags moved: 20, taken: 20", "pi is about 3.1", "timed out: PastSetTimeout"):
        assert shown in notebook, f"the notebook page lacks {shown!r}: its outputs are not in the manual"
    assert 'id="pastset.launch.local.local"' in api

    getting_started = html.unescape(re.sub(r"<[^>]+>", "", (out / "tutorial" / "getting-started.html").read_text()))
    steps = ["python3 -m venv .venv", "pip install .", "pypsrun examples/simple.py", "pypsrun examples/mcpiserver.py 2"]
    where = [getting_started.find(step) for step in steps]
    assert -1 not in where and where == sorted(where), "install, then simple.py, then pi, in that order"
