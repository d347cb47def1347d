"""Finding applications and X-function modules in the PSBIN directories.

Every layer that starts or loads a user's code (the launcher, the task runner,
the scheduler's spawn check, X-function loading) looks it up here, so there is
one rule for what PSBIN lets a run reach.
"""

from __future__ import annotations

import difflib
from pathlib import Path

__all__ = ["closest_name", "find_in_path"]


def find_in_path(name: str, psbin: list[str], suffix: str = "") -> Path | None:
    """The first ``name`` (+ ``suffix`` if missing) found in the PSBIN directories."""
    if suffix and not name.endswith(suffix):
        name += suffix
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in psbin:
        path = Path(folder or ".") / candidate
        if path.is_file():
            return path.resolve()
    return None


def closest_name(name: str, psbin: list[str], suffix: str = ".py") -> str | None:
    """The file in ``name``'s folder or in PSBIN whose name is closest to ``name`` (a typo's fix), if any is close."""
    given = Path(name)
    folders = [given.parent] if given.parent != Path(".") else []
    folders += [Path(folder or ".") for folder in psbin]
    names: set[str] = set()
    for folder in folders:
        try:
            names.update(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix))
        except OSError:
            continue
    found = difflib.get_close_matches(given.name, sorted(names), n=1, cutoff=0.75)
    if not found:
        return None
    return str(given.parent / found[0]) if given.parent != Path(".") else found[0]
