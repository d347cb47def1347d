"""X-functions: timestamps added by the server on move and on observe (xtimestamp.py).

Run:  pypsrun examples/xtimestampapp.py
The tuple moved is ('stamp', 'hello').  Read with observe(0) it carries one
time.asctime() string (when it was moved); the unindexed observe returns it
with a second one (when it was taken), and observe(0) afterwards shows that
the X-function wrote that annotated tuple back into the element's log.
"""

import pastset

pset = pastset.PastSet()
element = pset.enter(("stamp", str), xfunction="xtimestamp")
element.move(("stamp", "hello"))
print(f"observe(0) before: {element.observe(0)}")
print(f"observe():         {element.observe()}")
print(f"observe(0) after:  {element.observe(0)}")
