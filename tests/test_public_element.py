"""pastset.element is the public name of the element class that X-function modules subclass."""

from __future__ import annotations

import pastset
import pastset.core.element
import pastset.element


def test_the_public_name_is_the_element_itself() -> None:
    assert pastset.element.Element is pastset.core.element.Element
    assert pastset.element is pastset.__dict__["element"]
    for name in pastset.element.__all__:
        assert getattr(pastset.element, name) is getattr(pastset.core.element, name)
