"""Name-server names: one space and one scheduler per run, never shared between runs."""

from __future__ import annotations

from pastset.core.naming import FACTORY, scheduler_name, space_name


def test_each_run_has_its_own_names() -> None:
    names = {space_name("a"), space_name("b"), scheduler_name("a"), scheduler_name("b"), FACTORY}
    assert len(names) == 5
    assert space_name("a").endswith(".a") and scheduler_name("b").endswith(".b")
