"""X-functions: an element that casts what is moved into it (xtypecast.py).

Run:  pypsrun examples/xsimple.py
The element ('xcast', int, float) is entered with xfunction='xtypecast', so the
server casts every moved tuple to the template's types: moving
('xcast', '7', '2.5') stores ('xcast', 7, 2.5).  A value that cannot be cast
makes the move fail with pastset.XFunctionError and nothing is stored.
"""

import pastset

pset = pastset.PastSet()
element = pset.enter(("xcast", int, float), xfunction="xtypecast")
element.move(("xcast", "7", "2.5"))
print(element.observe())
try:
    element.move(("xcast", "seven", "2.5"))
except pastset.XFunctionError as err:
    print(f"refused: {err}")
print(element.first(), element.last())
