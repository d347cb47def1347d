"""X-functions: a priority queue built on an element (xpriority.py).

Run:  pypsrun examples/xpriorityapp.py
Jobs ('job', priority, name) are moved in arrival order; unindexed observes
hand them out highest priority first, equal priorities oldest first.  A tuple
without a numeric priority is refused by the X-function's move.
"""

import pastset

pset = pastset.PastSet()
jobs = pset.enter(("job", int, str), xfunction="xpriority")
for priority, name in [(1, "backup"), (5, "page-oncall"), (3, "build"), (5, "reboot"), (2, "email")]:
    jobs.move(("job", priority, name))
try:
    jobs.move(("job", "urgent", "spam"))
except pastset.PastSetTypeError as err:
    print(f"refused: {err}")

while jobs.first() < jobs.last():
    _, priority, name = jobs.observe()
    print(f"priority {priority}: {name}")
print(f"log in hand-out order: {[jobs.observe(i)[2] for i in range(jobs.last())]}")
