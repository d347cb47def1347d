"""Distributed item processing on the tuple space: one command over many items.

Items are lines of a file, files in a directory (recursively if asked), or a
numeric range cut into segments (as Qmaster cuts frames 1-30 into chunks).
Every item is processed exactly once: the jobs element is leased, so an item
whose worker dies goes to the next worker, and a result is acknowledged in the
same request that delivers it.

Each experiment has an id (``--name``, or derived from the command and the
items, so running the same command again finds it) and a directory holding the
run log, the item list, one result file per item and one session log per task and run
(``sessions/run<N>-<host>-<task>.log``).
Starting an experiment again skips the items it already finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from pastset.errors import ConfigurationError

__all__ = [
    "Item",
    "Plan",
    "collect_items",
    "experiment_dir",
    "finished",
    "load_plan",
    "record_result",
    "tally",
]

log = logging.getLogger(__name__)

JOBS = ("pypsitems.job", int, str)
RESULTS = ("pypsitems.result", int, int, str, str, str, float, str)


@dataclass
class Item:
    """One unit of work: its number, the text substituted for ``{}``, and a range if any."""

    index: int
    value: str
    start: int | None = None
    end: int | None = None


@dataclass
class Plan:
    """Everything a run of pypsitems needs, saved in the experiment directory."""

    name: str
    directory: str
    command: list[str] = field(default_factory=list)
    function: str = ""
    shell: bool = False
    shared: bool = True
    master: str = ""
    workers: int = 1
    items: list[Item] = field(default_factory=list)

    def save(self) -> Path:
        """Write the plan as plan.json in the experiment directory."""
        path = Path(self.directory) / "plan.json"
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def load_plan(path: str | Path) -> Plan:
    """Read a plan written by :meth:`Plan.save`."""
    data = json.loads(Path(path).read_text())
    data["items"] = [Item(**i) for i in data["items"]]
    return Plan(**data)


def collect_items(
    lines: str = "", files: str = "", recursive: bool = False, pattern: str = "*", span: str = "", chunk: int = 1
) -> list[Item]:
    """The items of a source: lines of a file, files of a directory, or range segments."""
    chosen = [bool(lines), bool(files), bool(span)]
    if sum(chosen) != 1:
        raise ConfigurationError("give exactly one item source: --lines FILE, --files DIR or --range A-B")
    if lines:
        try:
            text = Path(lines).read_text()
        except OSError as err:
            raise ConfigurationError(f"--lines {lines}: {err.strerror}") from None
        values = [line for line in text.splitlines() if line.strip()]
        return [Item(i, v) for i, v in enumerate(values)]
    if files:
        root = Path(files)
        if not root.is_dir():
            raise ConfigurationError(f"--files {files}: not a directory")
        found = root.rglob(pattern) if recursive else root.glob(pattern)
        paths = sorted(str(p.resolve()) for p in found if p.is_file())
        return [Item(i, p) for i, p in enumerate(paths)]
    try:
        low_text, _, high_text = span.partition("-")
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ConfigurationError(f"--range {span!r}: write it as FIRST-LAST, e.g. 1-30") from None
    if high < low or chunk < 1:
        raise ConfigurationError(f"--range {span} with --chunk {chunk}: need FIRST <= LAST and a chunk of 1 or more")
    items = []
    for number, start in enumerate(range(low, high + 1, chunk)):
        end = min(start + chunk - 1, high)
        items.append(Item(number, f"{start}-{end}", start, end))
    return items


def experiment_dir(name: str, base: str = "") -> Path:
    """The experiment's directory: under ``base`` (a shared path) or the user data directory."""
    root = Path(base).expanduser() if base else Path(platformdirs.user_data_dir("pastset")) / "experiments"
    path = root / name
    (path / "results").mkdir(parents=True, exist_ok=True)
    (path / "sessions").mkdir(exist_ok=True)
    return path


def experiment_name(command: list[str], function: str, items: list[Item]) -> str:
    """A stable id for the same command over the same items (so a rerun resumes)."""
    digest = hashlib.sha256(json.dumps([command, function, [i.value for i in items]]).encode()).hexdigest()
    return f"items-{digest[:10]}"


def finished(directory: str | Path) -> set[int]:
    """Indices of items already done successfully in this experiment."""
    return {index for index, status in _statuses(directory).items() if status == 0}


def tally(directory: str | Path) -> dict[str, int]:
    """How far an experiment got over all its runs: items, done (successfully), failed (last try), left."""
    statuses = _statuses(directory)
    try:
        total = len(json.loads((Path(directory) / "plan.json").read_text())["items"])
    except (OSError, ValueError, KeyError):
        total = len(statuses)
    done = sum(1 for status in statuses.values() if status == 0)
    failed = len(statuses) - done
    return {"items": total, "done": done, "failed": failed, "left": max(0, total - done - failed)}


def _statuses(directory: str | Path) -> dict[int, Any]:
    """The latest exit status recorded for each item."""
    statuses = {}
    for path in (Path(directory) / "results").glob("*.json"):
        try:
            statuses[int(path.stem)] = json.loads(path.read_text()).get("status")
        except (OSError, ValueError):
            continue
    return statuses


def record_result(directory: str | Path, result: dict[str, Any]) -> None:
    """Write one item's result (atomically, so a crash never leaves half a record)."""
    path = Path(directory) / "results" / f"{result['index']}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


def log_line(directory: str | Path, name: str, text: str) -> None:
    """Append a time-stamped line to a log in the experiment directory."""
    with (Path(directory) / name).open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
