"""The course exercises in doc/exercises: every solution passes its own grading; starters end with a message.

Each solution is run as a student would run it (pypsrun with the PSPROCS its page
gives), with the strict mode a course may switch on, and must print its graded
line.  The starters whose mistake is certain to show are run too: they must end
by themselves with a message that names the problem, never hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pastset.core.stall import STALLED_STATUS

pytestmark = pytest.mark.timeout(180)

EXERCISES = Path(__file__).resolve().parent.parent / "doc" / "exercises"

#: exercise -> (main program, PSPROCS, the graded line the solution prints)
SOLUTIONS = {
    "bag": ("squares.py", 2, "squares: sum of k*k for k in 1..200000 = 2666686666700000 in 20 jobs: correct"),
    "pipeline": ("shout.py", 2, "shout: 4 lines through 2 stages, in order: correct"),
    "barrier": ("rounds.py", 3, "rounds: 3 walkers x 3 rounds, nobody left a round before all had arrived: correct"),
    "reduction": (
        "total.py",
        3,
        f"total: sum of k**3 for k in 1..300000 = {(300000 * 300001 // 2) ** 2} from 3 partial sums: correct",
    ),
    "buffer": ("consumer.py", 2, "consumer: 30 items, in order, backlog at most 3 <= 3: correct"),
    "deadlock": ("swap.py", 2, "swap: partner 0 got 101 and partner 1 got 100: correct"),
}


def pypsrun(path: Path, procs: int, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PS")}
    environ.update(PSPROCS=str(procs), **env)
    cmd = [sys.executable, "-m", "pastset.commands.run", str(path)]
    return subprocess.run(cmd, cwd=path.parent, env=environ, capture_output=True, text=True, timeout=150)


def test_every_exercise_has_a_starter_a_solution_and_a_page_section() -> None:
    page = (EXERCISES.parent / "exercises.md").read_text()
    assert sorted(p.name for p in EXERCISES.iterdir() if p.is_dir()) == sorted(SOLUTIONS)
    for name, (main, _, _) in SOLUTIONS.items():
        starter, solution = EXERCISES / name / "starter", EXERCISES / name / "solution"
        assert sorted(p.name for p in starter.glob("*.py")) == sorted(p.name for p in solution.glob("*.py"))
        assert (starter / main).exists()
        assert f"{name}/starter/{main}" in page
        changed = [p.name for p in starter.glob("*.py") if p.read_text() != (solution / p.name).read_text()]
        assert changed, f"the {name} starter is the solution"


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_solution_passes_its_grading(name: str) -> None:
    main, procs, graded = SOLUTIONS[name]
    done = pypsrun(EXERCISES / name / "solution" / main, procs, PSSTRICT="yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == graded, done.stdout
    assert "Traceback" not in done.stderr


def test_bag_starter_says_no_result_came() -> None:
    done = pypsrun(EXERCISES / "bag" / "starter" / "squares.py", 2)
    assert done.returncode == 1
    assert "squares: no result for 10 s: is squareworker.py moving its results?" in done.stderr


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        (
            "pipeline",
            [
                "the app shout.py",
                "waits in observe on ('text', 2, int, str)",
                "(textstage.py on c",
                "waits in observe on ('text', 1, int, str)",
            ],
        ),
        ("reduction", ["the app total.py", "waits in observe on ('partial', int, int)"]),
        ("deadlock", ["(partner.py on c", "waits in observe on ('mailbox', 0)", "waits in observe on ('mailbox', 1)"]),
    ],
)
def test_starter_that_hangs_is_reported_naming_who_waits_where(name: str, blocked: list[str]) -> None:
    main, procs, _ = SOLUTIONS[name]
    done = pypsrun(EXERCISES / name / "starter" / main, procs)
    assert done.returncode == STALLED_STATUS, done.stderr
    assert "can never progress" in done.stderr
    for text in blocked:
        assert text in done.stderr, done.stderr
