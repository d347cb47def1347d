"""Exercise 1 (bag of tasks), the worker: take a job, move its partial sum, and again."""

import pastset

pset = pastset.PastSet()
jobs = pset.enter(("sq-job", int, int))
results = pset.enter(("sq-result", int))
while True:  # the run ends this loop: a worker blocked in observe exits quietly
    _, lo, hi = jobs.observe()
    results.move(("sq-result", sum(k * k for k in range(lo, hi))))
