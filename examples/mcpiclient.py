"""Monte Carlo pi worker: take a bag, throw darts, put the estimate back.

Spawned by mcpiserver.py; runs until the run ends (it then exits quietly).
"""

import random

import pastset

pset = pastset.PastSet()
jobs = pset.enter(("pi-jobs", int))
results = pset.enter(("pi-results", float))

while True:
    (bagsize,) = jobs.observe()
    inside = 0
    for _ in range(bagsize):
        x, y = random.random(), random.random()
        if x * x + y * y <= 1.0:
            inside += 1
    results.move((4.0 * inside / bagsize,))
