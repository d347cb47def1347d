"""The runs this user has going on this machine, as small JSON files.

``pypsrun`` writes one file per run (its id, name server address, pid, app,
start time) and removes it at the end; ``pypsmanage`` and ``pypsclean`` read
them to find a run by name, or the only one.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import platformdirs

from pastset.errors import ConfigurationError

__all__ = ["forget_run", "list_runs", "pick_run", "record_run", "runs_dir"]


def runs_dir() -> Path:
    """Where run files live (per user, per machine)."""
    with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (cron, ssh): platformdirs falls back quietly
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("pastset")) / "runs"


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
