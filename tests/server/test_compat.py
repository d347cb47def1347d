"""pyPastSet idioms, in programs of our own: X-functions that shadow or reach into the element, loose tuples."""

from __future__ import annotations

import pickle

import pytest

import pastset
from pastset.errors import XFunctionError

pytestmark = pytest.mark.timeout(120)

#: __init__ assigns self.template, shadowing the template() method (as pyPastSet's xtest.py does)
SHADOW = """
import pastset.element

class Element(pastset.element.Element):
    def __init__(self, template):
        super(Element, self).__init__(template)
        self.template = tuple(list(template)[1:])
        if self.template != (int, str):
            raise Exception("xshadow wants (int, str) after the tag, got %s" % (self.template,))

    def move(self, data):
        if tuple(type(x) for x in data) != self.template:
            raise Exception("xshadow: move with incompatible template")
        number, text = data
        super(Element, self).move((number * 3, text))

    def observe(self, index):
        number, text = super(Element, self).observe(index)
        return (number, text + " (seen)")
"""

#: the private hooks of pyPastSet's element: self.__set_entry and self.__template
PRIVATE = """
import pastset.element

class Element(pastset.element.Element):
    def move(self, data):
        if len(self.__template) != len(data):
            raise Exception("xprivate: %d values for a template of %d" % (len(data), len(self.__template)))
        kinds = [t if isinstance(t, type) else type(t) for t in self.__template]
        super(Element, self).move(tuple(kind(value) for kind, value in zip(kinds, data)))

    def observe(self, index):
        data = super(Element, self).observe(index)
        if index == -1:
            data = data + ("observed",)
            super(Element, self).__set_entry(super(Element, self).first() - 1, data)
        return data
"""

RAISES = """
import pastset.element

class Element(pastset.element.Element):
    def move(self, data):
        raise ValueError("xraises will not store %r" % (data,))
"""


class Letter:
    """An object that travels pickled in a str slot, as pyPastSet's simpleobject.py does."""

    def __init__(self, text: str) -> None:
        self.text = text


def test_an_xfunction_that_assigns_self_template_works(server):
    (server.psbin / "xshadow.py").write_text(SHADOW)
    pset = pastset.PastSet()
    e = pset.enter(("Shadow", int, str), "xshadow")
    assert e.template() == ("Shadow", int, str)  # what was entered, not the X-function's attribute
    e.move((14, "x"))
    assert (e.first(), e.last()) == (0, 1)
    assert e.observe() == (42, "x (seen)")
    assert (e.first(), e.last()) == (1, 1)
    assert pset.enter(("Shadow", int, str)).last() == 1  # the same element, found by its template
    with pytest.raises(XFunctionError, match="xshadow.*incompatible template"):
        e.move((1.5, "x"))
    pset.delelement(e)
    with pytest.raises(pastset.ElementDeletedError):
        e.template()
    with pytest.raises(XFunctionError, match="xshadow.*wants"):
        pset.enter(("Shadow", float), "xshadow")


def test_an_xfunction_using_the_private_hooks_works(server):
    (server.psbin / "xprivate.py").write_text(PRIVATE)
    e = pastset.PastSet().enter(("Cast", int, float, str), "xprivate")
    e.move(("zzz", "42", "3.5", 7))
    assert e.observe(0) == ("zzz", 42, 3.5, "7")
    assert e.observe() == ("zzz", 42, 3.5, "7", "observed")
    assert e.observe(0) == ("zzz", 42, 3.5, "7", "observed")  # set_entry replaced the stored tuple
    with pytest.raises(XFunctionError, match="xprivate.*2 values for a template of 4"):
        e.move((1, 2))
    assert e.last() == 1


def test_an_xfunction_that_raises_is_named_and_nothing_is_stored(server):
    (server.psbin / "xraises.py").write_text(RAISES)
    e = pastset.PastSet().enter(("Raises", int), "xraises")
    with pytest.raises(XFunctionError, match=r"X-function 'xraises' raised ValueError: xraises will not store"):
        e.move((1,))
    assert e.last() == 0 and e.template() == ("Raises", int)


def test_a_bare_non_tuple_move_and_a_pickled_object_in_a_str_slot(server):
    pset = pastset.PastSet()
    loose = pset.enter(("Test", int, float))
    loose.move(42)  # not a tuple at all: loose checking stores it as given
    loose.move([1, 2.5])
    assert loose.observe() == 42 and loose.observe() == [1, 2.5]
    objects = pset.enter(("Test", str))
    objects.move((pickle.dumps(Letter("Hello world...")),))
    assert (objects.first(), objects.last()) == (0, 1)
    back = pickle.loads(objects.observe()[0])
    assert isinstance(back, Letter) and back.text == "Hello world..."
    assert (objects.first(), objects.last()) == (1, 1)
