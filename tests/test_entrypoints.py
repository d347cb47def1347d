"""The one table of ``python -m`` targets names modules that exist and can be started."""

from __future__ import annotations

import importlib
import subprocess

import pytest

from pastset.entrypoints import MODULES, SPAWNABLE, python_m


@pytest.mark.parametrize("role", sorted(MODULES))
def test_every_target_has_a_main(role: str) -> None:
    module = importlib.import_module(MODULES[role])
    assert callable(getattr(module, "main", None)), f"{MODULES[role]} has no main()"


def test_a_target_starts_as_python_m() -> None:
    done = subprocess.run([*python_m("run"), "-h"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "PSPROCS" in done.stdout


def test_spawnable_modules_are_in_the_table() -> None:
    assert {name.removeprefix("module:") for name in SPAWNABLE} <= set(MODULES.values())
