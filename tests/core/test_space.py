"""The space on its own: templates to elements, deletion, X-functions from PSBIN, the end of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pastset.core.space import Space
from pastset.errors import AppNotFoundError, ElementDeletedError, RunEndedError, XFunctionError


def test_equal_templates_meet_and_different_types_do_not() -> None:
    space = Space("r")
    a = space.enter(("Test", int, float))
    assert space.enter(("Test", int, float)) == a
    assert space.enter(("Test", int, complex)) != a
    assert space.enter((1,)) != space.enter((True,)) != space.enter((1.0,))


def test_a_deleted_element_fails_old_ids_and_a_new_enter_is_fresh() -> None:
    space = Space("r")
    eid = space.enter(("jobs", int))
    space.element(eid).move((1,))
    space.delelement(("jobs", int))
    with pytest.raises(ElementDeletedError):
        space.element(eid).last()
    fresh = space.enter(("jobs", int))
    assert fresh != eid and space.element(fresh).last() == 0


def test_xfunctions_come_from_psbin_only(tmp_path: Path) -> None:
    (tmp_path / "xcount.py").write_text(
        "import pastset.element\n"
        "class Element(pastset.element.Element):\n"
        "    def move(self, data):\n"
        "        super().move((data[0] * 2,))\n"
    )
    (tmp_path / "xnoclass.py").write_text("x = 1\n")
    space = Space("r", [str(tmp_path)])
    eid = space.enter(("x", int), "xcount")
    space.element(eid).move((21,))
    assert space.element(eid).observe() == (42,)
    assert space.xfunction_of(eid) == "xcount"
    with pytest.raises(AppNotFoundError, match="PSBIN"):
        space.enter(("y", int), "xmissing")
    with pytest.raises(XFunctionError, match="has no class Element"):
        space.enter(("z", int), "xnoclass")
    with pytest.raises(XFunctionError, match="module names"):
        space.enter(("w", int), "../xcount")


def test_the_end_of_a_run_refuses_new_elements() -> None:
    space = Space("r")
    eid = space.enter(("jobs", int))
    space.end("the run has ended")
    assert space.ended
    with pytest.raises(RunEndedError):
        space.enter(("more", int))
    with pytest.raises(RunEndedError):
        space.element(eid).observe()
