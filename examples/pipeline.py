"""Pipeline: stages run as spawned tasks, connected by elements.

Run:  PSPROCS=3 pypsrun examples/pipeline.py [ITEMS]       (default 8 items)
Stage k (pipestage.py) takes ('pipe', k, seq, value) from the element
('pipe', k, int, int), applies its operation and moves the result into
('pipe', k + 1, int, int): the constant k in the template makes every link its
own element.  With one client per stage the stages work at the same time, each
on a different item.  A tuple with seq -1 ends the stream; each stage passes it
on and exits.  The program feeds link 0, reads the last link and checks every
result against the same operations done here.
"""

import sys

from pipestage import OPS

import pastset

STAGES = ["square", "inc", "double"]
items = int(sys.argv[1]) if len(sys.argv) > 1 else 8

pset = pastset.PastSet()
links = [pset.enter(("pipe", k, int, int)) for k in range(len(STAGES) + 1)]
for k, op in enumerate(STAGES):
    pset.spawn("pipestage.py", [k, op])

for seq in range(items):
    links[0].move(("pipe", 0, seq, seq))
links[0].move(("pipe", 0, -1, 0))  # end of stream

print(f"pipeline: {' | '.join(STAGES)}")
out = links[-1]
received = []
while True:
    _, _, seq, value = out.observe()
    if seq < 0:
        break
    received.append((seq, value))
    print(f"item {seq}: {value}")

expected = []
for seq in range(items):
    value = seq
    for op in STAGES:
        value = OPS[op](value)
    expected.append((seq, value))
if received != expected:
    sys.exit(f"pipeline: wrong results {received}, expected {expected}")
print(f"pipeline: {items} items through {len(STAGES)} stages, in order, all correct")
pset.halt()
