"""A worker of matmul.py: read B once, then multiply row blocks of A until the run ends.

Spawned by matmul.py;  run the multiplication:
      PSPROCS=2 pypsrun examples/matmul.py
The loop never ends by itself: when the master is done, the run ends and a
worker blocked in observe exits quietly.
"""

import numpy as np

import pastset

pset = pastset.PastSet()
_, b = pset.enter(("matmul-B", np.ndarray)).observe(0)  # indexed: read, do not take
jobs = pset.enter(("matmul-job", int, np.ndarray))
results = pset.enter(("matmul-result", int, np.ndarray))

while True:
    _, low, block = jobs.observe()
    results.move(("matmul-result", low, block @ b))
