"""Spawned by spawntest.py: report the command-line arguments this task got.

Run spawntest.py, not this:  PSPROCS=2 pypsrun examples/spawntest.py
"""

import sys

import pastset

pset = pastset.PastSet()
pset.enter(("spawned", tuple)).move(("spawned", tuple(sys.argv[1:])))
