"""Finding applications in PSBIN: the first directory that has the file wins."""

from __future__ import annotations

from pathlib import Path

from pastset.psbin import find_in_path


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
