"""The plan of an item-processing experiment: item sources, its directory, its id, saved results and tallies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pastset.errors import ConfigurationError
from pastset.items.plan import (
    Item,
    Plan,
    collect_items,
    experiment_dir,
    experiment_name,
    finished,
    load_plan,
    log_line,
    record_result,
    tally,
)


def test_lines_of_a_file_are_items_blank_ones_skipped(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("a b\n\n  \nc\n")
    assert collect_items(lines=str(source)) == [Item(0, "a b"), Item(1, "c")]


def test_files_of_a_directory_are_items_sorted_matching_and_recursive_if_asked(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.dat", "a.dat", "c.txt", "sub/d.dat"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir.dat").mkdir()  # not a file: never an item
    flat = collect_items(files=str(tmp_path), pattern="*.dat")
    assert [i.value for i in flat] == [str(tmp_path / "a.dat"), str(tmp_path / "b.dat")]
    assert [i.index for i in flat] == [0, 1]
    deep = collect_items(files=str(tmp_path), recursive=True, pattern="*.dat")
    assert str(tmp_path / "sub" / "d.dat") in [i.value for i in deep] and len(deep) == 3


def test_a_range_is_cut_into_chunks_the_last_one_shorter() -> None:
    assert collect_items(span="1-10", chunk=4) == [Item(0, "1-4", 1, 4), Item(1, "5-8", 5, 8), Item(2, "9-10", 9, 10)]
    assert collect_items(span="3-3") == [Item(0, "3-3", 3, 3)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give exactly one item source"),
        ({"lines": "x", "span": "1-2"}, "give exactly one item source"),
        ({"span": "one-ten"}, r"--range 'one-ten': write it as FIRST-LAST, e.g. 1-30"),
        ({"span": "5"}, "write it as FIRST-LAST"),
        ({"span": "5-3"}, r"need FIRST <= LAST and a chunk of 1 or more"),
        ({"span": "1-3", "chunk": 0}, "a chunk of 1 or more"),
    ],
)
def test_a_wrong_source_says_how_to_write_it(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        collect_items(**options)


def test_a_missing_file_or_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"--lines {tmp_path}/gone: No such file"):
        collect_items(lines=str(tmp_path / "gone"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="not a directory"):
        collect_items(files=str(tmp_path / "file"))


def test_the_experiment_directory_is_made_with_its_results_and_sessions(tmp_path: Path) -> None:
    path = experiment_dir("exp1", str(tmp_path / "shared"))
    assert path == tmp_path / "shared" / "exp1"
    assert (path / "results").is_dir() and (path / "sessions").is_dir()
    assert experiment_dir("exp1", str(tmp_path / "shared")) == path, "made again: no error"


def test_the_experiment_directory_defaults_to_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert experiment_dir("exp2") == tmp_path / "pastset" / "experiments" / "exp2"


def test_the_same_command_over_the_same_items_has_the_same_id() -> None:
    items = [Item(0, "a"), Item(1, "b")]
    name = experiment_name(["wc", "{}"], "", items)
    assert name.startswith("items-") and len(name) == 16
    assert experiment_name(["wc", "{}"], "", [Item(0, "a"), Item(1, "b")]) == name
    assert experiment_name(["wc", "{}"], "", items[:1]) != name
    assert experiment_name(["wc", "-l", "{}"], "", items) != name
    assert experiment_name(["wc", "{}"], "mod:f", items) != name


def test_a_plan_is_saved_and_loaded_with_its_items(tmp_path: Path) -> None:
    plan = Plan("e", str(tmp_path), ["echo", "{}"], shell=True, workers=3, items=collect_items(span="1-4", chunk=2))
    path = plan.save()
    assert path == tmp_path / "plan.json"
    assert load_plan(path) == plan


def test_results_count_as_finished_only_with_status_zero_and_the_latest_record_wins(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    record_result(tmp_path, {"index": 0, "status": 0})
    record_result(tmp_path, {"index": 1, "status": 2})
    record_result(tmp_path, {"index": 2, "status": 1})
    record_result(tmp_path, {"index": 2, "status": 0})  # retried, and it worked
    (tmp_path / "results" / "3.json").write_text("{half")  # a torn file is not a result
    assert finished(tmp_path) == {0, 2}
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["0.json", "1.json", "2.json", "3.json"]
    assert json.loads((tmp_path / "results" / "2.json").read_text()) == {"index": 2, "status": 0}


def test_a_tally_counts_done_failed_and_left_against_the_plan(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    record_result(tmp_path, {"index": 0, "status": 0})
    record_result(tmp_path, {"index": 1, "status": 3})
    assert tally(tmp_path) == {"items": 2, "done": 1, "failed": 1, "left": 0}, "without a plan: what was recorded"
    Plan("e", str(tmp_path), items=[Item(i, str(i)) for i in range(5)]).save()
    assert tally(tmp_path) == {"items": 5, "done": 1, "failed": 1, "left": 3}


def test_log_lines_are_appended_with_a_time(tmp_path: Path) -> None:
    log_line(tmp_path, "run.log", "started")
    log_line(tmp_path, "run.log", "ended")
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["started", "ended"]
    assert len(lines[0].split(" ")[0]) == 10 and lines[0][4] == "-", "YYYY-MM-DD HH:MM:SS first"
