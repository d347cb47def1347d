"""Why the wire is msgpack: a bare Pyro5 echo per serializer, and pastset's pair.

Run:  python bench/wire_choice.py [ROUNDS]
Prints median microseconds per call for a bare Pyro5 echo of (1, 3.14) and of a
1000-integer tuple with Pyro5's serpent (default) and msgpack serializers, and
pastset's own move+observe pair carrying the same values, on loopback.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

import Pyro5.api
from Pyro5 import config


@Pyro5.api.expose
class Echo:
    def echo(self, value):
        return value


def per_call_us(fn, rounds: int) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        samples.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(samples)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    config.SERVERTYPE = "thread"
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uri = daemon.register(Echo())
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    small, big = (1, 3.14), tuple(range(1000))
    rows = []
    for serializer in ("serpent", "msgpack"):
        proxy = Pyro5.api.Proxy(uri)
        proxy._pyroSerializer = serializer
        for name, value in (("(1, 3.14)", small), ("1000 ints", big)):
            call = lambda proxy=proxy, value=value: proxy.echo(value)  # noqa: E731
            rows.append((f"bare Pyro5 echo, {serializer}", name, per_call_us(call, rounds)))
    daemon.shutdown()

    cmd = [sys.executable, "-m", "pastset.commands.server", "--run", "bench", "--port", "0", "--ready"]
    server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    address = server.stdout.readline().decode().split()[1]
    os.environ.update(PSNS=address, PSRUN="bench")
    import pastset

    element = pastset.PastSet().enter(("bench", int, float))
    for name, value in (("(1, 3.14)", small), ("1000 ints", big)):

        def pair(value=value) -> None:
            element.move(value)
            element.observe()

        rows.append(("pastset move+observe pair", name, per_call_us(pair, rounds)))
    server.stdin.close()
    server.wait(10)
    print(f"{'measure':<32} {'value':<10} {'median us':>10}")
    for what, name, us in rows:
        print(f"{what:<32} {name:<10} {us:>10.1f}")


if __name__ == "__main__":
    main()
