"""Insert one tuple and read it back: the smallest PastSet program.

Run:  pypsrun examples/simple.py
Prints "0 1", the tuple, then "1 1": first and last before and after an observe.
"""

import pastset

pset = pastset.PastSet()
element = pset.enter(("Test", int, float))
element.move((42, 3.14))
print(element.first(), element.last())
print(element.observe())
print(element.first(), element.last())
