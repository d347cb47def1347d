"""Every module a pastset process is started from, in one table.

The launcher, the client worker and the item processing start processes as
``python -m MODULE``; naming those modules here, and only here, shows arrows
that no import statement shows (the launcher starts the commands, it never
imports them).  ``tests/test_entrypoints.py`` checks that each one has a ``main``.
"""

from __future__ import annotations

import sys

__all__ = ["MODULES", "SPAWNABLE", "python_m"]

#: role -> the module ``python -m`` runs for it
MODULES: dict[str, str] = {
    "server": "pastset.commands.server",
    "client": "pastset.commands.client",
    "remote": "pastset.commands.remote",
    "runner": "pastset.commands.runner",
    "app": "pastset.commands.app",
    "run": "pastset.commands.run",
    "clean": "pastset.commands.clean",
    "manage": "pastset.commands.manage",
    "items": "pastset.commands.items",
    "items_worker": "pastset.commands.items_worker",
    "journal": "pastset.commands.journal",
}

#: The only ``module:`` targets ``spawn`` accepts: tasks that ship with pastset itself.
SPAWNABLE: frozenset[str] = frozenset({"module:" + MODULES["items_worker"]})


def python_m(role: str, python: str = sys.executable) -> list[str]:
    """The command line that starts ``role``'s module with ``python``."""
    return [python, "-m", MODULES[role]]
