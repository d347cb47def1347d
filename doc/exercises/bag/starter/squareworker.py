"""Exercise 1 (bag of tasks), the worker: take a job, move its partial sum, and again."""

import pastset

pset = pastset.PastSet()
jobs = pset.enter(("sq-job", int, int))
results = pset.enter(("sq-result", int))

# TODO: take jobs ("sq-job", lo, hi) for as long as there are any, and for each
# move ("sq-result", s) where s is the sum of k * k for lo <= k < hi.
