"""The runs this user has going on this machine, as small JSON files.

``pypsrun`` writes one file per run (its id, name server address, pid, app,
start time) and removes it at the end; ``pypsmanage`` and ``pypsclean`` read
them to find a run by name, or the only one.

When a run ends its *record* (tasks, clients, sampled element counters: what
``pypsmanage report`` draws) is kept in the user's data directory; the newest
:data:`KEEP_RECORDS` are kept.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import platformdirs

from pastset.errors import ConfigurationError

__all__ = [
    "forget_run",
    "list_records",
    "list_runs",
    "load_record",
    "pick_run",
    "record_run",
    "records_dir",
    "runs_dir",
    "save_record",
]

KEEP_RECORDS = 50


def _fallback_runtime_dir() -> Path:
    """Where platformdirs goes without a usable XDG_RUNTIME_DIR: ``runtime-UID`` in the temporary directory."""
    return Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}"


def _foreign(path: Path) -> str:
    """Why ``path`` (if it exists) is not a private directory of this user, or ''."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return ""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = f"uid {info.st_uid}"
        return f"is owned by another user ({owner})"
    if info.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def runs_dir() -> Path:
    """Where run files live (per user, per machine).

    Run files hold the run's secret, so the runtime directory must be this
    user's own: one another user made in advance (``/tmp/runtime-UID`` when
    XDG_RUNTIME_DIR is unset) is a ConfigurationError naming it.
    """
    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (cron, ssh): platformdirs falls back quietly
        warnings.simplefilter("ignore")
        try:
            base = Path(platformdirs.user_runtime_dir("pastset"))
        except PermissionError as err:
            raise ConfigurationError(_unsafe(_fallback_runtime_dir(), str(err))) from None
    for folder in (base.parent, base):
        problem = _foreign(folder)
        if problem:
            raise ConfigurationError(_unsafe(folder, problem))
    return base / "runs"


def _unsafe(folder: Path, problem: str) -> str:
    return (
        f"the runtime directory {folder} cannot hold this user's run files: {problem}. "
        "Set XDG_RUNTIME_DIR to a directory of your own with mode 0700, or remove that directory"
    )


def record_run(run_id: str, info: dict[str, Any]) -> Path:
    """Write the file for ``run_id``."""
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{run_id}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the run's secret
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"run": run_id, "started": time.time(), **info}))
    tmp.replace(path)
    return path


def forget_run(run_id: str) -> None:
    """Remove the file for ``run_id`` if it is there."""
    try:
        (runs_dir() / f"{run_id}.json").unlink()
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    if pid <= 0:  # no pid recorded: os.kill(0 or -N, 0) would ask about process groups, not a pypsrun
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_runs() -> list[dict[str, Any]]:
    """Every recorded run, oldest first, with ``alive`` telling if its pypsrun still runs."""
    rows: list[dict[str, Any]] = []
    folder = runs_dir()
    if not folder.is_dir():
        return rows
    for path in folder.glob("*.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        info["alive"] = _alive(int(info.get("pid", 0) or 0))
        rows.append(info)
    return sorted(rows, key=lambda r: r.get("started", 0))


def pick_run(name: str | None) -> dict[str, Any]:
    """The live run called ``name``, or the only live run; ConfigurationError otherwise."""
    live = [r for r in list_runs() if r["alive"]]
    if name:
        for run in live:
            if run["run"] == name or run["run"].startswith(name):
                return run
        raise ConfigurationError(f"no live run named {name!r}; 'pypsmanage runs' lists them")
    if len(live) == 1:
        return live[0]
    if not live:
        raise ConfigurationError("no live run found; start one with pypsrun, or name one with --ns/--run")
    names = ", ".join(r["run"] for r in live)
    raise ConfigurationError(f"{len(live)} runs are live ({names}); choose one with --run NAME")


def records_dir() -> Path:
    """Where the records of ended runs are kept (per user)."""
    return Path(platformdirs.user_data_dir("pastset")) / "records"


def save_record(run_id: str, record: dict[str, Any]) -> Path:
    """Keep the record of run ``run_id``; the oldest beyond :data:`KEEP_RECORDS` are removed."""
    folder = records_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{run_id}.json"
    tmp = folder / f".{run_id}.tmp"
    tmp.write_text(json.dumps(record, default=str))
    tmp.replace(path)
    for old in list_records()[:-KEEP_RECORDS]:
        old.unlink(missing_ok=True)
    return path


def list_records() -> list[Path]:
    """The kept records, oldest first."""
    folder = records_dir()
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []


def load_record(name: str) -> dict[str, Any]:
    """The record of the ended run ``name`` (or a unique prefix of it, or a file path)."""
    given = Path(name).expanduser()
    if name.endswith(".json") and given.is_file():
        return json.loads(given.read_text())
    found = [p for p in list_records() if p.stem == name] or [p for p in list_records() if p.stem.startswith(name)]
    if len(found) != 1:
        known = ", ".join(p.stem for p in list_records()[-5:]) or "none yet"
        what = "no recorded run" if not found else f"{len(found)} recorded runs"
        raise ConfigurationError(f"{what} named {name!r} in {records_dir()} (newest: {known}); give its full name")
    return json.loads(found[0].read_text())
