"""X-function (old style): cast every moved value to the type in the template.

Used by xsimple.py:  pypsrun examples/xsimple.py
An X-function is a module in PSBIN defining class Element(pastset.element.Element);
the server loads it when an enter names it (xfunction='xtypecast') and creates
the element.  This one is written as pyPastSet X-functions were: it reads the
private self.__template (mangled to _Element__template, which the base class
keeps under exactly that name) and chains to super().move.  Constant template
entries such as the tag 'xcast' cast with their own type (str).
"""

import pastset.element


class Element(pastset.element.Element):
    """An element whose move (X-in) casts each value to its template type."""

    def move(self, data):
        if len(self.__template) != len(data):
            raise Exception(f"PastSet: move with incompatible data size ({len(data)})")
        types = [entry if isinstance(entry, type) else type(entry) for entry in self.__template]
        typed = tuple(cast(value) for cast, value in zip(types, data))
        super().move(typed)
