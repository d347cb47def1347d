"""The run object before anything starts: its wiring, its placement, what children are given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pastset.errors import AppNotFoundError
from pastset.launch.run import Run, find_app, new_run_id
from pastset.settings import Settings


def test_a_run_owns_its_wiring_and_leaves_the_settings_alone(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "master.py"
    app.parent.mkdir()
    app.write_text("")
    settings = Settings.load(environ={"PSPROCS": "3", "PSBIN": str(tmp_path)}, files=[])
    before = dataclasses.asdict(settings)
    run = Run(settings, str(app), [])
    assert dataclasses.asdict(settings) == before
    assert run.wiring.run == run.run_id and len(run.wiring.secret) >= 24
    assert run.wiring.psbin == (str(tmp_path), str(app.parent)), "the app's folder joins PSBIN"
    assert run.placement == ["localhost"] * 3
    env = settings.child_environment(run.wiring, base={})
    assert env["PSRUN"] == run.run_id and env["PSSECRET"] == run.wiring.secret and env["PSPROCS"] == "3"
    assert Run(settings, str(app), []).wiring.secret != run.wiring.secret


def test_run_ids_are_unique_and_name_this_host() -> None:
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100


def test_an_app_not_found_names_psbin(tmp_path: Path) -> None:
    (tmp_path / "there.py").write_text("")
    assert find_app("there.py", [str(tmp_path)]) == (tmp_path / "there.py").resolve()
    with pytest.raises(AppNotFoundError, match="PSBIN"):
        find_app("missing.py", [str(tmp_path)])


def test_children_of_a_checkout_import_this_pastset_and_of_an_install_change_nothing() -> None:
    """PYTHONPATH gains the folder that holds the package (never the package folder itself, whose
    modules would then shadow top-level names such as ``errors`` or ``report``)."""
    import site

    import pastset
    from pastset.launch.children import package_path_env

    holder = Path(pastset.__file__).resolve().parent.parent
    env = package_path_env({"PYTHONPATH": "/elsewhere"})
    if str(holder) in [*site.getsitepackages(), site.getusersitepackages()]:
        assert env == {"PYTHONPATH": "/elsewhere"}, "an installed pastset needs no PYTHONPATH"
    else:
        first, *rest = env["PYTHONPATH"].split(":")
        assert (Path(first) / "pastset" / "__init__.py").resolve() == Path(pastset.__file__).resolve()
        assert rest == ["/elsewhere"]
