"""The trivial application P6 times under pypsrun: connect, one move, one observe, done."""

import pastset

pset = pastset.PastSet()
element = pset.enter(("bench-trivial", int))
element.move((1,))
element.observe()
print("trivial ok")
