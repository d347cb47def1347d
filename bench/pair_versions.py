"""Pair latency of two source trees side by side: each tree's server and client, interleaved rounds.

    python bench/pair_versions.py OTHER_TREE [PAIRS]

OTHER_TREE is a checkout of another revision (``git archive REV | tar -x -C DIR``).
Each round runs PAIRS move+observe pairs on one tree's server from one of its
own clients, alternating trees; prints medians and the ratio this tree / other.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent.parent)
CLIENT = (
    "import time, pastset\n"
    "e = pastset.PastSet().enter(('pair', int, float))\n"
    "for i in range(200): e.move((i, 3.14)); e.observe()\n"
    "t = time.perf_counter()\n"
    "for i in range({n}): e.move((i, 3.14)); e.observe()\n"
    "print((time.perf_counter() - t) / {n})\n"
)


def start(tree: str) -> tuple[subprocess.Popen, dict[str, str]]:
    env = dict(os.environ, PSSECRET="pair-bench", PSBIN="/tmp", PYTHONPATH=tree)
    cmd = [sys.executable, "-m", "pastset.commands.server", "--run", "pairs", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen([*cmd, "--ready"], env=env, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().split()[1]
    return proc, dict(env, PSNS=address, PSRUN="pairs")


def main() -> None:
    other, pairs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    servers = {"this": start(HERE), "other": start(other)}
    times: dict[str, list[float]] = {"this": [], "other": []}
    try:
        for _ in range(5):
            for name, tree in (("other", other), ("this", HERE)):
                out = subprocess.check_output(
                    [sys.executable, "-c", CLIENT.format(n=pairs)], env=servers[name][1], cwd=tree, text=True
                )
                times[name].append(float(out))
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
    this, that = statistics.median(times["this"]) * 1e6, statistics.median(times["other"]) * 1e6
    print(f"pair: this tree {this:.1f} us, {other} {that:.1f} us, ratio {this / that:.2f}")


if __name__ == "__main__":
    main()
