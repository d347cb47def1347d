"""Finding applications in PSBIN (the first directory that has the file wins), confined to PSBIN.

Spawn is confined to PSBIN: the caller is refused at spawn time, and so is the task runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import pastset
from pastset.commands import runner
from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.entrypoints import MODULES, SPAWNABLE
from pastset.errors import AppNotFoundError
from pastset.psbin import check_spawn_target, find_in_path, find_spawnable

pytestmark = pytest.mark.timeout(60)

TIMEIT = str(Path(sysconfig.get_paths()["stdlib"]) / "timeit.py")


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A PSBIN directory with an app, a subdirectory, and links in and out; a file outside it."""
    psbin, outside = tmp_path / "bin", tmp_path / "outside"
    (psbin / "sub").mkdir(parents=True)
    outside.mkdir()
    (psbin / "app.py").write_text("print('app')\n")
    (psbin / "sub" / "deep.py").write_text("print('deep')\n")
    (outside / "evil.py").write_text("print('evil')\n")
    (psbin / "inside_link.py").symlink_to(psbin / "app.py")
    (psbin / "evil_link.py").symlink_to(outside / "evil.py")
    (psbin / "outdir").symlink_to(outside)
    return psbin, outside


def test_files_inside_psbin_are_found(tree):
    psbin, _ = tree
    assert find_in_path("app.py", [str(psbin)]) == (psbin / "app.py").resolve()
    assert find_in_path("app", [str(psbin)], ".py") == (psbin / "app.py").resolve()
    assert find_in_path("sub/deep.py", [str(psbin)]) == (psbin / "sub" / "deep.py").resolve()
    assert find_in_path(str(psbin / "app.py"), [str(psbin)]) == (psbin / "app.py").resolve()
    assert find_in_path("inside_link.py", [str(psbin)]) == (psbin / "app.py").resolve()


@pytest.mark.parametrize(
    "name",
    ["../outside/evil.py", "sub/../../outside/evil.py", "evil_link.py", "outdir/evil.py", "/etc/passwd", TIMEIT],
)
def test_nothing_outside_psbin_is_found(tree, name):
    psbin, outside = tree
    name = name.replace("/outside/", f"/{outside.name}/")
    assert find_in_path(name, [str(psbin)]) is None
    with pytest.raises(AppNotFoundError, match="PSBIN"):
        find_spawnable(name, [str(psbin)])


def test_module_targets_only_from_the_allow_list():
    allowed = "module:" + MODULES["items_worker"]
    assert allowed in SPAWNABLE and find_spawnable(allowed, ["."]) == allowed
    for module in ("module:timeit", "module:pastset.commands.server", "module:os"):
        with pytest.raises(AppNotFoundError, match="PSBIN"):
            check_spawn_target(module)


def test_the_scheduler_refuses_at_spawn_time_even_without_checking_files(tree):
    psbin, outside = tree
    checked = Scheduler(Space("confined", [str(psbin)]))
    try:
        assert checked.spawn("app.py")
        for name in (str(outside / "evil.py"), "../outside/evil.py", "evil_link.py", TIMEIT, "module:timeit"):
            with pytest.raises(AppNotFoundError, match="PSBIN"):
                checked.spawn(name, ["-s", "import os"])
        assert [t["app"] for t in checked.snapshot()["tasks"]] == ["app.py"]
    finally:
        checked.end()
    unchecked = Scheduler(Space("unchecked", [str(psbin)]), check_apps=False)
    try:
        for name in ("module:timeit", "../x.py"):
            with pytest.raises(AppNotFoundError, match="PSBIN"):
                unchecked.spawn(name)
    finally:
        unchecked.end()


def test_the_caller_is_refused_before_anything_is_sent():
    pset = object.__new__(pastset.PastSet)  # not connected: a refusal must come before any call
    for name in ("module:timeit", "../outside.py", "a/../../b.py"):
        with pytest.raises(AppNotFoundError, match="PSBIN"):
            pastset.PastSet.spawn(pset, name, "")


def test_spawn_through_a_server_names_psbin(server, tmp_path):
    (tmp_path / "outside.py").write_text("print('outside')\n")
    pset = pastset.PastSet()
    for name in ("/etc/passwd", TIMEIT, str(tmp_path / "outside.py"), "module:timeit"):
        with pytest.raises(AppNotFoundError, match="PSBIN"):
            pset.spawn(name, ["-s", "import os; os.system('true')"])


def test_the_runner_refuses_what_spawn_refuses(tree, monkeypatch, capsys):
    psbin, outside = tree
    env = dict(os.environ, PSBIN=str(psbin), PSTASK="t1")
    for name in (str(outside / "evil.py"), "evil_link.py", "module:timeit", TIMEIT):
        done = subprocess.run(
            [sys.executable, "-m", MODULES["runner"], name, "-s", "print('ran')"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 127 and "PSBIN" in done.stderr, done.stderr
        assert "evil" not in done.stdout and "ran" not in done.stdout
    done = subprocess.run([sys.executable, "-m", MODULES["runner"], "app.py"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "app\n"
    assert runner.main.__module__ == MODULES["runner"]


def test_the_first_directory_that_has_it_wins(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (two / "app.py").write_text("")
    assert find_in_path("app.py", [str(one), str(two)]) == (two / "app.py").resolve()
    (one / "app.py").write_text("")
    assert find_in_path("app.py", [str(one), str(two)]) == (one / "app.py").resolve()


def test_a_suffix_is_added_when_missing_and_directories_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "xprio.py").write_text("")
    (tmp_path / "folder.py").mkdir()
    assert find_in_path("xprio", [str(tmp_path)], ".py") == (tmp_path / "xprio.py").resolve()
    assert find_in_path("xprio.py", [str(tmp_path)], ".py") == (tmp_path / "xprio.py").resolve()
    assert find_in_path("folder", [str(tmp_path)], ".py") is None
    assert find_in_path("missing.py", [str(tmp_path)]) is None
