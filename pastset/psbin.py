"""Finding applications and X-function modules in the PSBIN directories.

Every layer that starts or loads a user's code (the launcher, the task runner,
the scheduler's spawn check, X-function loading) looks it up here, so there is
one rule for what PSBIN lets a run reach: a file inside one of the PSBIN
directories, after symlinks are resolved.  An absolute path outside them, a
``..`` that climbs out, or a symlink pointing elsewhere is refused, so a
client that may call ``spawn`` cannot make a worker run ``/tmp/x.py`` or a
standard-library script such as ``timeit.py`` with code of its choosing.
``module:`` targets are accepted only from :data:`pastset.entrypoints.SPAWNABLE`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path, PurePath

from pastset.entrypoints import SPAWNABLE
from pastset.errors import AppNotFoundError

__all__ = ["check_spawn_target", "closest_name", "find_in_path", "find_spawnable"]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def find_in_path(name: str, psbin: list[str], suffix: str = "") -> Path | None:
    """The first ``name`` (+ ``suffix`` if missing) inside the PSBIN directories, resolved.

    ``name`` may be a plain file name or a relative path below a PSBIN
    directory, or an absolute path that lies inside one; what it resolves to
    (symlinks followed) must lie inside the same directory.  Anything else is
    not found (None).
    """
    if suffix and not name.endswith(suffix):
        name += suffix
    if not name or "\0" in name:
        return None
    candidate = Path(name)
    for folder in psbin:
        try:
            root = Path(folder or ".").resolve()
            path = (candidate if candidate.is_absolute() else root / candidate).resolve()
        except (OSError, RuntimeError):  # a symlink loop, an unreadable directory
            continue
        if _inside(path, root) and path.is_file():
            return path
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


def check_spawn_target(app: object) -> str:
    """Refuse, without touching the file system, a spawn target that can never be in PSBIN.

    Used on the caller's side of ``spawn``: a ``module:`` target not in the
    allow-list, or a path with a ``..`` component, raises AppNotFoundError
    naming PSBIN.  Returns ``app``.
    """
    if not isinstance(app, str) or not app:
        return app  # type: ignore[return-value]  # the type check names this
    if app.startswith("module:"):
        if app not in SPAWNABLE:
            raise AppNotFoundError(
                f"cannot spawn {app!r}: only the module targets {', '.join(sorted(SPAWNABLE))} may be spawned; "
                "put your application in a PSBIN directory and spawn it by file name"
            )
        return app
    if ".." in PurePath(app).parts or "\0" in app:
        raise AppNotFoundError(
            f"cannot spawn {app!r}: spawned applications must lie inside a PSBIN directory, and '..' "
            "may not climb out of it; put the file in PSBIN and spawn it by name"
        )
    return app


def find_spawnable(app: str, psbin: list[str]) -> Path | str:
    """The file ``spawn`` target ``app`` names inside PSBIN, or the allowed ``module:`` target itself.

    Raises AppNotFoundError, naming PSBIN, for anything else.
    """
    check_spawn_target(app)
    if app.startswith("module:"):
        return app
    path = find_in_path(app, psbin)
    if path is None:
        close = closest_name(app, psbin)
        raise AppNotFoundError(
            f"cannot spawn {app!r}: it is not a file inside PSBIN ({os.pathsep.join(psbin)}); "
            + (
                f"did you mean {close}?"
                if close
                else "spawned applications must lie inside a PSBIN directory (symlinks resolved, no absolute "
                "path or '..' leading out): put it there or set PSBIN to its directory"
            )
        )
    return path
