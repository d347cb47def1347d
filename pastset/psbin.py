"""Finding applications and X-function modules in the PSBIN directories.

Every layer that starts or loads a user's code (the launcher, the task runner,
the scheduler's spawn check, X-function loading) looks it up here, so there is
one rule for what PSBIN lets a run reach.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_in_path"]


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
