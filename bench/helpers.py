"""Child processes of the benchmark (not run by hand): ``python bench/helpers.py ROLE ...``.

Roles:
  pyro-echo                          a bare Pyro5 object (echo, put, get) on 127.0.0.1; stops when stdin closes
  blockers SYSTEM ADDRESS RUN N KEY  N threads, each with its own connection, blocked in observe / BLPOP
  pairs SYSTEM ADDRESS RUN KEY       one client doing move+observe (or RPUSH+BLPOP) pairs on command
  fill ADDRESS RUN START COUNT       move (i, float(i)) for COUNT values of i into the P5 element
  ablation MODE                      a server doing one more piece of pastset's request path per mode
  profile-client ADDRESS RUN SECONDS CPU
                                     pastset pairs for SECONDS on CPU (run under py-spy by the profile step)

SYSTEM is ``pastset`` or ``redis`` (``pairs`` also takes ``pyro``: the bare Pyro5 object's put/get).
Every role prints one line when it is ready and ends when its standard input closes (or, for
``blockers`` and ``fill``, when its work is done).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack

SMALL = (1, 3.14)


def say(line: str) -> None:
    """One line to the parent, at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def watch_stdin(on_eof: Callable[[], None]) -> None:
    """Call ``on_eof`` when the parent closes our stdin (or dies)."""

    def watch() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        on_eof()

    threading.Thread(target=watch, daemon=True).start()


# -------------------------------------------------------------------- pyro-echo
def pyro_echo() -> None:
    """Serve a bare Pyro5 object with the thread server until stdin closes."""
    import Pyro5.api
    from Pyro5 import config

    config.SERVERTYPE = "thread"
    config.THREADPOOL_SIZE = 200
    config.SOCK_NODELAY = True
    config.POLLTIMEOUT = 0.5

    @Pyro5.api.expose
    class Echo:
        """Echo a value; put/get values through blocking queues by key (the shape of a pair)."""

        def __init__(self) -> None:
            self._queues: dict[str, collections.deque[Any]] = collections.defaultdict(collections.deque)
            self._cond = threading.Condition()

        def echo(self, value: Any) -> Any:
            return value

        def put(self, value: Any, key: str = "") -> None:
            with self._cond:
                self._queues[key].append(value)
                self._cond.notify_all()

        def get(self, key: str = "") -> Any:
            with self._cond:
                while not self._queues[key]:
                    self._cond.wait()
                return self._queues[key].popleft()

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Echo(), "echo")
    stop = threading.Event()
    watch_stdin(stop.set)
    say(f"READY {uri}")
    daemon.requestLoop(loopCondition=lambda: not stop.is_set())
    daemon.close()


# ---------------------------------------------------------------------- clients
def pastset_pair(address: str, run: str, template: tuple) -> tuple[Callable[[], None], Callable[[], None]]:
    """A pastset move+observe pair on ``template``, and a closer."""
    import pastset

    pset = pastset.PastSet(run=run, ns=address)
    element = pset.enter(template)

    def pair() -> None:
        element.move(SMALL)
        element.observe()

    return pair, pset.close


def redis_pair(address: str, key: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """A Redis RPUSH+BLPOP pair on list ``key`` carrying msgpack, and a closer."""
    import redis

    host, _, port = address.rpartition(":")
    client = redis.Redis(host=host, port=int(port))
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def pair() -> None:
        client.rpush(key, packb(SMALL))
        unpackb(client.blpop([key])[1])

    return pair, client.close


def pyro_pair(uri: str, key: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """A bare Pyro5 put+get pair on queue ``key`` of the echo object, and a closer."""
    import Pyro5.api

    proxy = Pyro5.api.Proxy(uri)
    proxy._pyroSerializer = "msgpack"

    def pair() -> None:
        proxy.put(SMALL, key)
        proxy.get(key)

    return pair, proxy._pyroRelease


def blockers(system: str, address: str, run: str, count: int, key: str) -> None:
    """``count`` threads, each on its own connection, blocked in observe (or BLPOP).

    Prints ``CONNECTED n`` once every thread has its connection, ``DONE n`` when
    all have returned (the parent moves ``count`` tuples to release them).
    """
    threading.stack_size(256 * 1024)
    connected = threading.Semaphore(0)
    done: list[int] = []
    failed: list[str] = []

    if system == "pastset":
        import pastset

        pset = pastset.PastSet(run=run, ns=address)

        def one() -> None:
            try:
                element = pset.enter(("bench-p4-blocked", int, float))  # opens this thread's connection
            except Exception as err:
                failed.append(repr(err))
                connected.release()
                return
            connected.release()
            element.observe()
            done.append(1)

    else:
        import redis

        host, _, port = address.rpartition(":")

        def one() -> None:
            try:
                client = redis.Redis(host=host, port=int(port))
                client.ping()  # opens the connection
            except Exception as err:
                failed.append(repr(err))
                connected.release()
                return
            connected.release()
            client.blpop([key])
            done.append(1)
            client.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for _ in threads:
        connected.acquire()
    if failed:
        say(f"FAILED {len(failed)} {failed[0]}")
        return
    say(f"CONNECTED {count}")
    for thread in threads:
        thread.join()
    say(f"DONE {len(done)}")


def pairs(system: str, address: str, run: str, key: str) -> None:
    """A P7 client: on ``GO START END`` (epoch seconds) do pairs in that window and print the count."""
    if system == "pastset":
        pair, close = pastset_pair(address, run, ("bench-p7", key, int, float))
    elif system == "pyro":
        pair, close = pyro_pair(address, key)
    else:
        pair, close = redis_pair(address, key)
    for _ in range(50):
        pair()
    say("READY")
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "GO":
            break
        start, end = float(words[1]), float(words[2])
        while time.time() < start:
            time.sleep(min(0.01, max(0.0, start - time.time())))
        count = 0
        while time.time() < end:
            pair()
            count += 1
        say(f"COUNT {count}")
    close()


def fill(address: str, run: str, start: int, count: int) -> None:
    """Move ``(i, float(i))`` for ``i`` in ``start .. start+count-1`` into the P5 element."""
    import pastset

    pset = pastset.PastSet(run=run, ns=address)
    element = pset.enter(("bench-p5", int, float))
    say("READY")
    sys.stdin.readline()
    values = [(i, float(i)) for i in range(start, start + count)]
    if hasattr(element, "move_many"):
        for at in range(0, len(values), 10_000):
            element.move_many(values[at : at + 10_000])
    else:
        move = element.move
        for value in values:
            move(value)
    say(f"DONE {count}")
    pset.close()


def profile_client(address: str, run: str, seconds: float, cpu: int) -> None:
    """Do pastset pairs for ``seconds`` on CPU ``cpu`` and print how many (the profiled client)."""
    import os

    os.sched_setaffinity(0, {cpu})
    pair, close = pastset_pair(address, run, ("bench-profile", int, float))
    for _ in range(50):
        pair()
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        pair()
        count += 1
    say(f"COUNT {count}")
    close()


def ablation(mode: str) -> None:
    """A server doing one more piece of a pastset request per mode (the profile's in-place ablation).

    Modes: ``raw`` (a bare TCP echo of length-prefixed frames, no Pyro5),
    ``echo`` (a Pyro5 object returning the request bytes), ``wire`` (plus
    pastset.wire decode of the request and encode of the reply), ``element``
    (plus the operation on a pastset Element), ``dispatch`` (pastset's
    SpaceService request handling without its call gauge), ``service``
    (SpaceService.call, exactly what the pastset server runs, in a plain Pyro5 daemon).
    Prints ``READY ADDRESS EID`` and serves until stdin closes.
    """
    stop = threading.Event()
    watch_stdin(stop.set)
    if mode == "raw":
        import socket
        import struct

        listener = socket.create_server(("127.0.0.1", 0))

        def serve(conn: socket.socket) -> None:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                while True:
                    head = conn.recv(4, socket.MSG_WAITALL)
                    if len(head) < 4:
                        return
                    body = conn.recv(struct.unpack("!I", head)[0], socket.MSG_WAITALL)
                    conn.sendall(head + body)

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        say(f"READY 127.0.0.1:{listener.getsockname()[1]} 0")
        stop.wait()
        listener.close()
        return

    import Pyro5.api
    from Pyro5 import config

    from pastset import wire
    from pastset.core.space import Space
    from pastset.core.waits import Caller
    from pastset.element import Element
    from pastset.server.service import SpaceService

    config.SERVERTYPE = "thread"
    config.THREADPOOL_SIZE = 200
    config.SOCK_NODELAY = True
    config.POLLTIMEOUT = 0.5
    space = Space("ablation")
    service = SpaceService(space)
    eid = space.enter(("bench-ablation", int, float))
    element = Element(("bench-ablation", int, float))

    @Pyro5.api.expose
    class Server:
        """One ``call(bytes) -> bytes`` entry, like pastset's SpaceService."""

        def call(self, request: bytes) -> bytes:
            if mode == "echo":
                return request
            if mode == "wire":
                message = wire.decode(request)
                return wire.encode((0, None if message[0] == "move" else SMALL))
            if mode == "element":
                message = wire.decode(request)
                if message[0] == "move":
                    element.move(message[2])
                    return wire.encode((0, None))
                return wire.encode((0, element.observe()))
            if mode == "dispatch":
                return wire.encode(service._call(Caller(), request, None))
            return service.call(request)

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Server(), "ablation")
    say(f"READY {uri} {eid}")
    daemon.requestLoop(loopCondition=lambda: not stop.is_set())
    daemon.close()


def main(argv: list[str]) -> None:
    """Dispatch on the role named in ``argv[0]``."""
    role, args = argv[0], argv[1:]
    if role == "pyro-echo":
        pyro_echo()
    elif role == "blockers":
        blockers(args[0], args[1], args[2], int(args[3]), args[4])
    elif role == "pairs":
        pairs(args[0], args[1], args[2], args[3])
    elif role == "fill":
        fill(args[0], args[1], int(args[2]), int(args[3]))
    elif role == "ablation":
        ablation(args[0])
    elif role == "profile-client":
        profile_client(args[0], args[1], float(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
