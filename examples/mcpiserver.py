"""Monte Carlo pi, bag of tasks: the server puts bags in, workers take them out.

Run:  PSPROCS=2 pypsrun examples/mcpiserver.py WORKERS BAGS BAGSIZE
e.g.  PSPROCS=2 pypsrun examples/mcpiserver.py 2 20 100000
Each bag goes to exactly one worker (mcpiclient.py) because an unindexed observe
hands every tuple to exactly one observer; results come back through a second
element.
"""

import sys

import pastset

workers, bags, bagsize = 2, 1000, 1000000
if len(sys.argv) > 1:
    workers = int(sys.argv[1])
if len(sys.argv) > 2:
    bags = int(sys.argv[2])
if len(sys.argv) > 3:
    bagsize = int(sys.argv[3])

pset = pastset.PastSet()
jobs = pset.enter(("pi-jobs", int))
results = pset.enter(("pi-results", float))

for _ in range(bags):
    jobs.move((bagsize,))
for _ in range(workers):
    pset.spawn("mcpiclient.py", "")

WAIT = 30  # seconds for the next result: a bag of tasks should never wait forever
pi = 0.0
for _ in range(bags):
    try:
        pi += results.observe(timeout=WAIT)[0]
    except pastset.PastSetTimeoutError:
        sys.exit(f"mcpiserver: no result for {WAIT} s; did a worker fail? (its traceback is above)")
pi /= bags

print(f"Pi is found as {pi:f} with {workers} worker(s), {bags} bag(s) and bagsize of {bagsize}")
pset.halt()
