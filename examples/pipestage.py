"""One stage of pipeline.py: take from link k, apply an operation, move to link k + 1.

Spawned by pipeline.py as  pipestage.py K OP;  run the pipeline:
      PSPROCS=3 pypsrun examples/pipeline.py
The unindexed observe hands this stage the items of link k in the order they
were moved, so the stream stays in order.  pipeline.py imports OPS to check the
results.
"""

import sys

import pastset

OPS = {"square": lambda v: v * v, "inc": lambda v: v + 1, "double": lambda v: 2 * v}


def stage(k, op):
    pset = pastset.PastSet()
    inbox = pset.enter(("pipe", k, int, int))
    outbox = pset.enter(("pipe", k + 1, int, int))
    while True:
        _, _, seq, value = inbox.observe()
        if seq < 0:  # end of stream: pass it on and stop
            outbox.move(("pipe", k + 1, seq, 0))
            return
        outbox.move(("pipe", k + 1, seq, OPS[op](value)))


if __name__ == "__main__":
    stage(int(sys.argv[1]), sys.argv[2])
