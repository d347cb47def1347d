"""pastset.local(): a whole run from plain Python, from a pytest fixture, and from a Jupyter notebook.

Every run here is real: a server process, client processes, spawned tasks.
Each test checks that the run's processes are gone once its block is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, run_processes

import pastset
from pastset.runs import list_runs, load_record

pytestmark = pytest.mark.timeout(180)
pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOK = ROOT / "doc" / "tutorial" / "notebook.ipynb"

SCRIPT = """
import json, os, sys
import pastset

ids = []
with pastset.local(procs=2, psbin=sys.argv[1]) as pset:
    ids.append(os.environ["PSRUN"])
    jobs, results = pset.enter(("pi-jobs", int)), pset.enter(("pi-results", float))
    for _ in range(12):
        jobs.move((2000,))
    tasks = [pset.spawn("mcpiclient.py") for _ in range(2)]
    pi = sum(results.observe()[0] for _ in range(12)) / 12
    pset.halt()
    taken = jobs.first()
with pastset.local(procs=1) as again:  # a second run in the same process: new, empty elements
    ids.append(os.environ["PSRUN"])
    fresh = again.enter(("pi-jobs", int)).last()
try:
    with pastset.local(procs=1) as doomed:
        ids.append(os.environ["PSRUN"])
        raise KeyError("leaving by an exception")
except KeyError:
    pass
print(json.dumps({"pi": pi, "tasks": tasks, "taken": taken, "fresh": fresh, "ids": ids,
                  "env": "PSNS" in os.environ}))
"""


def _gone(run_id: str) -> bool:
    return not run_processes(run_id)


def test_local_from_a_plain_script_runs_a_bag_of_tasks_and_leaves_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(EXAMPLES)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert 3.0 < out["pi"] < 3.3 and out["tasks"] == ["t1", "t2"] and out["taken"] == 12
    assert out["fresh"] == 0, "the second run saw the first one's element"
    assert len(set(out["ids"])) == 3 and out["env"] is False, "the run's settings outlived the block"
    for run_id in out["ids"]:
        assert _gone(run_id), f"processes of run {run_id} were left behind"


def test_local_yields_a_run_that_pypsmanage_sees_and_that_ends_with_the_block(tmp_path: Path) -> None:
    with pastset.local(procs=2, psbin=EXAMPLES, deadtime=10) as pset:
        run_id = os.environ["PSRUN"]
        live = [r for r in list_runs() if r["run"] == run_id]
        assert live and live[0]["alive"], "the run is not recorded for pypsmanage"
        manage = subprocess.run(
            [sys.executable, "-m", "pastset.commands.manage", "clients", "--run", run_id, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert manage.returncode == 0, manage.stderr
        assert len(json.loads(manage.stdout)) == 2
        with pytest.raises(pastset.PastSetTimeoutError):
            pset.enter(("never", int)).observe(timeout=0.2)
        assert run_processes(run_id)
    assert _gone(run_id)
    assert not [r for r in list_runs() if r["run"] == run_id], "the run file outlived the run"
    assert load_record(run_id)["run"] == run_id, "the ended run left no record for pypsmanage report"


def test_bad_settings_are_refused_by_name_before_anything_starts() -> None:
    with pytest.raises(pastset.ConfigurationError, match="no setting 'colour'"):
        with pastset.local(colour="blue"):
            pass
    with pytest.raises(pastset.ConfigurationError, match="PSDEADTIME"):
        with pastset.local(deadtime=-1):
            pass
    with pytest.raises(pastset.ConfigurationError, match="whole number"):
        with pastset.local(procs=-2):
            pass


@pytest.mark.pastset(procs=2, psbin=str(EXAMPLES))
def test_the_pastset_run_fixture_runs_a_bag_of_tasks(pastset_run: pastset.PastSet) -> None:
    jobs, results = pastset_run.enter(("pi-jobs", int)), pastset_run.enter(("pi-results", float))
    jobs.move_many([(1000,)] * 8)
    for _ in range(2):
        pastset_run.spawn("mcpiclient.py")
    estimates = [results.observe(timeout=60)[0] for _ in range(8)]
    pastset_run.halt()
    assert all(0.0 <= e <= 4.0 for e in estimates) and jobs.first() == 8


def test_the_fixture_ends_its_run_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_student=textwrap.dedent(
            """
            import os

            def test_one(pastset_run):
                e = pastset_run.enter(("answer", int))
                e.move((42,))
                assert e.observe() == (42,)
                open("run.txt", "w").write(os.environ["PSRUN"])

            def test_failing(pastset_run):
                assert pastset_run.enter(("x", int)).last() == 1
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    run_id = (pytester.path / "run.txt").read_text()
    assert run_id and _gone(run_id)


def test_the_tutorial_notebook_runs_in_a_jupyter_kernel() -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    stored = [c.outputs for c in notebook.cells if c.cell_type == "code"]
    assert all(stored), "the notebook is shipped without its outputs"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    before = {r["run"] for r in list_runs()}
    NotebookClient(
        notebook, timeout=150, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    text = ["".join(o.get("text", "") for o in c.outputs) for c in notebook.cells if c.cell_type == "code"]
    assert "bags moved: 20, taken: 20" in text[0] and "pi is about 3.1" in text[0]
    assert "('hello from a notebook',)" in text[1]
    assert "timed out: PastSetTimeoutError" in text[2]
    assert {r["run"] for r in list_runs()} == before, "a run of the notebook is still recorded"
