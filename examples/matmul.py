"""Master/worker matrix multiplication with NumPy: C = A @ B by row blocks.

Run:  PSPROCS=2 pypsrun examples/matmul.py [N [BLOCKS [WORKERS]]]   (default 120 6 2; needs numpy)
NumPy arrays travel whole inside tuples (as their raw buffer) and arrive as
arrays of the same dtype and shape.  The master moves B once into ('matmul-B',
ndarray); every worker (matworker.py) reads that one tuple with the indexed
observe(0), which takes nothing, so B is shared, not consumed.  The row blocks
of A are a bag of tasks in ('matmul-job', int, ndarray): each goes to exactly
one worker, which moves its block of C back with the block's first row.  The
master puts C together and compares it with A @ B computed here.
"""

import itertools
import sys

import numpy as np

import pastset

n = int(sys.argv[1]) if len(sys.argv) > 1 else 120
blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 6
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2

rng = np.random.default_rng(2024)
a = rng.integers(-9, 10, size=(n, n))
b = rng.integers(-9, 10, size=(n, n))

pset = pastset.PastSet()
shared = pset.enter(("matmul-B", np.ndarray))
jobs = pset.enter(("matmul-job", int, np.ndarray))
results = pset.enter(("matmul-result", int, np.ndarray))

shared.move(("matmul-B", b))
starts = [n * k // blocks for k in range(blocks + 1)]
for low, high in itertools.pairwise(starts):
    jobs.move(("matmul-job", low, a[low:high]))
for _ in range(workers):
    pset.spawn("matworker.py", "")

c = np.zeros((n, n), dtype=a.dtype)
WAIT = 30  # seconds for the next block: a bag of tasks should never wait forever
for _ in range(blocks):
    try:
        _, low, block = results.observe(timeout=WAIT)
    except pastset.PastSetTimeoutError:
        sys.exit(f"matmul: no result block for {WAIT} s; did a worker fail? (its traceback is above)")
    c[low : low + len(block)] = block
pset.halt()

if np.array_equal(c, a @ b):
    print(f"C = A @ B for {n}x{n} {c.dtype} matrices in {blocks} row blocks by {workers} workers: ok")
else:
    sys.exit(f"matmul: C differs from A @ B in {np.count_nonzero(c != a @ b)} places")
