"""Where the time of a pastset move+observe pair goes, client side and server side.

Three views, all written into RESULTS.md under "Profile":

1. An in-place ablation: the same two requests (move, observe) against servers
   that each do one more piece of pastset's request path - a raw TCP echo, a
   bare Pyro5 echo, plus the wire codec, plus the element, plus SpaceService's
   dispatch, plus its call gauge; then the real pastset server reached over its
   direct channel instead of Pyro5, and finally the full client API.  The
   differences between neighbours are what each piece costs where it really
   runs (cold caches, context switches included).
2. The CPU cost of each piece timed alone in a tight loop in this process (hot
   caches), for comparison.
3. py-spy sampling of a client process doing pairs (idle time included, so the
   wait for the reply shows) and of the server process (threads serving a
   request), on different cores, with every sample put in one bucket: wire codec, Pyro5
   serializer, Pyro5 call machinery, socket I/O, locking, server dispatch,
   element, client API.
"""

from __future__ import annotations

import collections
import re
import shutil
import struct
import subprocess
import subprocess as sp
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    HERE,
    Processes,
    clean_env,
    interleave,
    median,
    median_us,
    per_op_us,
    pin,
    read_line,
    start_pastset,
)

SMALL = (1, 3.14)
RUN = "bench-profile"
Ablation = list[tuple[str, float, float]]
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


ABLATION = (
    ("raw", "raw TCP round trips, Python at both ends, no Pyro5 (the floor)"),
    ("echo", "+ Pyro5 (proxy, protocol, daemon, msgpack serializer): a bare Pyro5 echo of the bytes"),
    ("wire", "+ server: pastset.wire decode of the request, encode of the reply"),
    ("element", "+ server: Element.move / Element.observe (lock, notify)"),
    ("dispatch", "+ server: SpaceService dispatch (op table, deadline, _apply, counters)"),
    ("service", "+ server: the call gauge around it (SpaceService.call)"),
    ("server", "the real pastset server process over its direct channel (pastset.transport.channel) instead of Pyro5"),
    ("full", "+ client: ElementHandle / PastSet._call and pastset.wire encode and decode"),
)


def ablation(
    procs: Processes, cpu: int, pairs: int, rounds: int, log: Callable[[str], None]
) -> list[tuple[str, float, float]]:
    """Median pair time for each step of :data:`ABLATION`: (label, µs, µs added by this step).

    Every server and this process run on CPU ``cpu``, as in P1.
    """
    import socket

    import Pyro5.api

    import pastset
    from pastset import wire

    started: list[sp.Popen[str]] = []
    fns: dict[str, Callable[[], None]] = {}
    closers: list[Callable[[], None]] = []
    server = start_pastset(procs, RUN)
    try:
        for mode, _ in ABLATION[:6]:
            argv = [sys.executable, str(HERE / "helpers.py"), "ablation", mode]
            proc = procs.start(f"ablation-{mode}", argv, stdin=sp.PIPE, stdout=sp.PIPE, env=clean_env(), text=True)
            started.append(proc)
            _, address, eid_text = read_line(proc.stdout, 30, f"ablation server {mode}").split()
            pin(proc.pid, {cpu})
            move = wire.encode(("move", int(eid_text), SMALL, None))
            observe = wire.encode(("observe", int(eid_text), -1, None))
            if mode == "raw":
                host, _, port = address.rpartition(":")
                sock = socket.create_connection((host, int(port)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                closers.append(sock.close)

                def raw(sock: socket.socket = sock, frames: tuple[bytes, ...] = (move, observe)) -> None:
                    for body in frames:
                        sock.sendall(struct.pack("!I", len(body)) + body)
                        head = sock.recv(4, socket.MSG_WAITALL)
                        sock.recv(struct.unpack("!I", head)[0], socket.MSG_WAITALL)

                fns[mode] = raw
            else:
                proxy = Pyro5.api.Proxy(address)
                proxy._pyroSerializer = "msgpack"
                closers.append(proxy._pyroRelease)

                def call(proxy: Pyro5.api.Proxy = proxy, frames: tuple[bytes, ...] = (move, observe)) -> None:
                    for body in frames:
                        proxy.call(body)

                fns[mode] = call
        pin(server.pid, {cpu})
        pset = pastset.PastSet(run=RUN, ns=server.address)
        closers.append(pset.close)
        element = pset.enter(("bench-ablation", int, float))
        raw_proxy = getattr(pset, "_link", None)
        eid = getattr(element, "_eid", None)
        if callable(raw_proxy) and isinstance(eid, int):
            frames = (wire.encode(("move", eid, SMALL, None)), wire.encode(("observe", eid, -1, None)))

            def real(frames: tuple[bytes, ...] = frames) -> None:
                proxy = raw_proxy()
                for body in frames:
                    proxy.call(body)

            fns["server"] = real

        def full() -> None:
            element.move(SMALL)
            element.observe()

        fns["full"] = full
        pin(0, {cpu})
        for fn in fns.values():
            for _ in range(200):
                fn()
        got = interleave({k: (lambda fn=fn: median_us(fn, pairs)) for k, fn in fns.items()}, rounds)
        element.axe(element.first())
    finally:
        for close in closers:
            try:
                close()
            except Exception:
                pass
        for proc in started:
            procs.stop(proc)
        procs.stop(server.proc)
    out: list[tuple[str, float, float]] = []
    previous = 0.0
    for mode, label in ABLATION:
        if mode in got:
            value = median(got[mode])
            out.append((label, value, value - previous))
            previous = value
    log("profile: ablation done")
    return out


def _best(fn: Callable[[], object], count: int, rounds: int = 5) -> tuple[float, float]:
    """Best-of-rounds µs per call of ``fn`` in a tight loop, and minor page faults per call."""
    import resource

    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    best = min(per_op_us(fn, count) for _ in range(rounds))
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (count * rounds)
    return best, faults


Hot = list[tuple[str, float, float]]


def hot_costs(count: int) -> Hot:
    """CPU cost of each piece alone in a tight loop (hot caches): (label, µs, minor faults per call)."""
    import msgpack
    import numpy as np

    from pastset import wire
    from pastset.core.space import Space
    from pastset.core.waits import Caller
    from pastset.element import Element
    from pastset.server.service import SpaceService

    space = Space("decomposition")
    service = SpaceService(space)
    eid = space.enter(("bench-decomp", int, float))
    element = Element(("bench-decomp", int, float))
    move_req = wire.encode(("move", eid, SMALL, None))
    obs_req = wire.encode(("observe", eid, -1, None))
    move_rep = wire.encode((0, None))
    obs_rep = wire.encode((0, SMALL))

    def client_wire() -> None:
        wire.encode(("move", eid, SMALL, None))
        wire.decode(move_rep)
        wire.encode(("observe", eid, -1, None))
        wire.decode(obs_rep)

    def server_wire() -> None:
        wire.decode(move_req)
        wire.encode((0, None))
        wire.decode(obs_req)
        wire.encode((0, SMALL))

    def server_call() -> None:
        service.call_parts(move_req, [])
        service.call_parts(obs_req, [])

    def server_call_nogauge() -> None:
        wire.encode_parts(service._call(Caller(), move_req, []))
        wire.encode_parts(service._call(Caller(), obs_req, []))

    def element_only() -> None:
        element.move(SMALL)
        element.observe()

    ints = tuple(range(1000))
    array = np.arange(1 << 17, dtype=np.float64)
    ints_msg = wire.encode(("move", eid, ints, None))
    array_msg = wire.encode(("move", eid, (array,), None))
    array_body, *array_buffers = wire.encode_parts(("move", eid, (array,), None))
    array_received = [bytearray(b) for b in array_buffers]
    packed_ints = msgpack.packb(ints)
    rows: Hot = []
    for label, fn, n in (
        ("pair: client pastset.wire, encode 2 requests + decode 2 replies", client_wire, count),
        ("pair: server pastset.wire, decode 2 requests + encode 2 replies", server_wire, count),
        ("pair: server SpaceService.call x2 (wire + dispatch + gauge + element)", server_call, count),
        ("pair: server SpaceService._call x2 (the same without the gauge)", server_call_nogauge, count),
        ("pair: Element.move + Element.observe alone", element_only, count),
        ("P3: wire.encode of a move of the 1000-int tuple", lambda: wire.encode(("move", eid, ints, None)), 2000),
        ("P3: wire.decode of it", lambda: wire.decode(ints_msg), 2000),
        (
            "P3: msgpack.packb + unpackb of the tuple (the Redis client's work)",
            lambda: msgpack.unpackb(msgpack.packb(ints), use_list=False),
            2000,
        ),
        (
            "P3: wire.encode of a move of the 1 MiB array, in band (Pyro5)",
            lambda: wire.encode(("move", eid, (array,), None)),
            100,
        ),
        ("P3: wire.decode of that array move", lambda: wire.decode(array_msg), 100),
        (
            "P3: wire.encode_parts of it, out of band (the direct channel)",
            lambda: wire.encode_parts(("move", eid, (array,), None)),
            100,
        ),
        ("P3: wire.decode_parts of it", lambda: wire.decode_parts(array_body, array_received), 100),
        (
            "P3: array.tobytes() + np.frombuffer (the Redis client's work)",
            lambda: np.frombuffer(array.tobytes(), dtype=np.float64),
            100,
        ),
    ):
        us, faults = _best(fn, n)
        rows.append((label, us, faults))
    del packed_ints
    return rows


# --------------------------------------------------------------------- sampling
BUCKETS = (
    "pastset.wire codec (+ its msgpack)",
    "Pyro5 serializer (msgpack of Pyro messages)",
    "Pyro5 call machinery (proxy / daemon / protocol)",
    "socket send/recv syscalls (client: includes waiting for the reply)",
    "locking and wake-ups (threading)",
    "server dispatch (pastset.server.host / space)",
    "element semantics (pastset.element)",
    "client API (pastset.client / proxies)",
    "benchmark loop",
    "other",
    "direct channel (event loop, framing, its socket calls)",
)


def _bucket(frames: list[tuple[str, str]]) -> str | None:
    """The bucket of one sample (frames root first); None for background threads."""
    files = [f for _, f in frames]
    funcs = [fn for fn, _ in frames]
    if any(f.endswith("pastset/transport/channel_server.py") for f in files):
        if any(f.endswith("selectors.py") for f in files) or funcs[-1:] == ["_Poller.poll"]:
            return None  # the channel's event loop waiting for the next request
        if not any(f.endswith(("pastset/server.py", "pastset/wire.py", "pastset/element.py")) for f in files):
            return BUCKETS[10]
    if any(f.endswith(("pastset/proc.py", "selectors.py")) for f in files) or "_watch_clients" in funcs:
        return None  # the accept loop, the lifeline watcher, heartbeats: not the pair path
    if any("importlib._bootstrap" in f for f in files):
        return None  # the client starting up
    if any(f.endswith("Pyro5/svr_threads.py") for f in files):
        if not any("handleRequest" in fn for fn in funcs):
            return None  # an idle pool worker waiting for a connection (py-spy sometimes sees it as active)
        if funcs[-2:] == ["recv_stub", "receive_data"] and "Daemon.handleRequest" in funcs[-3]:
            return None  # a connection thread waiting for its next request
    for func, file in reversed(frames):
        if file.endswith("pastset/wire.py"):
            return BUCKETS[0]
        if file.endswith("Pyro5/serializers.py"):
            return BUCKETS[1]
        if file.endswith(("Pyro5/socketutil.py", "socket.py")):
            return BUCKETS[3]
        if file.endswith("threading.py") and func not in {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}:
            return BUCKETS[4]
        if file.endswith(("pastset/server.py", "pastset/space.py")):
            return BUCKETS[5]
        if file.endswith("pastset/element.py"):
            return BUCKETS[6]
        if file.endswith(("pastset/client.py", "pastset/proxies.py")):
            return BUCKETS[7]
        if "Pyro5/" in file:
            return BUCKETS[2]
        if file.endswith("helpers.py"):
            return BUCKETS[8]
    return BUCKETS[9]


def parse_raw(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Buckets and leaf functions (self time) of a py-spy ``--format raw`` file; and the sample count."""
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            match = _FRAME.match(part.strip())
            if match:
                frames.append((match["func"], match["file"]))
        if not frames:
            continue
        count = int(count_text)
        bucket = _bucket(frames)
        if bucket is None:
            continue
        buckets[bucket] += count
        func, file = frames[-1]
        leaves[f"{func} ({file})"] += count
        total += count
    return buckets, leaves, total


def sample(
    procs: Processes, seconds: float, rate: int, cpus: tuple[int, int], log: Callable[[str], None]
) -> dict[str, object]:
    """Profile a client process doing pairs and the server serving it, with py-spy.

    The client runs on CPU ``cpus[0]``, the server on ``cpus[1]``: on one core a
    server thread would be charged for the client's run whenever its reply wakes it.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    server = start_pastset(procs, RUN)
    pin(server.pid, {cpus[1]})
    out = Path(procs.tempdir("pastset-bench-profile-"))
    record = [spy, "record", "--rate", str(rate), "--format", "raw", "--output"]
    client_argv = [sys.executable, str(HERE / "helpers.py"), "profile-client", server.address, RUN, str(seconds)]
    try:
        server_spy = procs.start(
            "py-spy-server",
            [*record, str(out / "server.raw"), "--pid", str(server.pid), "--duration", str(int(seconds + 2))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        client_spy = procs.start(
            "py-spy-client",
            [*record, str(out / "client.raw"), "--idle", "--", *client_argv, str(cpus[0])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            text=True,
        )
        line = ""
        while not line.startswith("COUNT"):  # py-spy writes its own lines to the same stdout
            line = read_line(client_spy.stdout, seconds + 60, "profiled client")
        pairs = int(line.split()[1])
        for proc in (client_spy, server_spy):
            proc.wait(seconds + 30)
            if proc.returncode != 0:
                raise RuntimeError(f"py-spy failed: {proc.stderr.read() if proc.stderr else ''}")
    finally:
        for name in ("client_spy", "server_spy"):
            proc = locals().get(name)
            if proc is not None:
                procs.stop(proc)
        procs.stop(server.proc)
    log(f"profile: {pairs} pairs in {seconds:.0f} s under py-spy")
    client = parse_raw(out / "client.raw")
    srv = parse_raw(out / "server.raw")
    return {"pairs": pairs, "seconds": seconds, "client": client, "server": srv, "rate": rate}


def _pct(part: int, total: int) -> str:
    return f"{100 * part / total:.1f} %" if total else "-"


def render(abl: Ablation, hot: Hot, pair_us: float, sampled: dict[str, object] | None) -> str:
    """The tables of the Profile section of RESULTS.md."""
    lines = [
        "### Where a pair's time goes, piece by piece, in place (median µs per move+observe pair, one core)",
        "",
        "| step | pair | added by this step |",
        "|---|---|---|",
    ]
    for label, value, added in abl:
        lines.append(f"| {label} | {value:.1f} | {added:+.1f} |")
    lines += [
        "",
        f"(P1 measured the full pair at {pair_us:.1f} µs in the main run.)",
        "",
        "### The same pieces alone in a tight loop (hot caches, this process)",
        "",
        "| piece | µs per call | minor page faults per call |",
        "|---|---|---|",
    ]
    for label, us, faults in hot:
        lines.append(f"| {label} | {us:.1f} | {faults:.1f} |")
    if sampled is None:
        return "\n".join(lines)
    client_b, client_l, client_t = sampled["client"]  # type: ignore[misc]
    server_b, server_l, server_t = sampled["server"]  # type: ignore[misc]
    lines += [
        "",
        f"### py-spy samples ({sampled['rate']} Hz, {sampled['seconds']:.0f} s, "
        f"{sampled['pairs']:,} pairs while sampled; client and server on different cores)",
        "",
        "Client: every sample of the client process, idle included (start-up left out), so the wait for "
        "the reply shows. Server: samples of threads serving a request (py-spy leaves out threads it sees "
        "blocked; a connection thread waiting for its next request, idle pool workers and background "
        "threads are left out here as well), i.e. where the server's time per request goes.",
        "",
        "| bucket | client | server |",
        "|---|---|---|",
    ]
    for bucket in BUCKETS:
        c, s = client_b.get(bucket, 0), server_b.get(bucket, 0)
        if c or s:
            lines.append(f"| {bucket} | {_pct(c, client_t)} | {_pct(s, server_t)} |")
    lines.append(f"| samples | {client_t} | {server_t} |")
    for title, leaves, total in (("Server", server_l, server_t), ("Client", client_l, client_t)):
        lines += ["", f"{title}, top functions by self time:", "", "| function | self |", "|---|---|"]
        for name, count in leaves.most_common(12):
            lines.append(f"| `{name}` | {_pct(count, total)} |")
    return "\n".join(lines)
