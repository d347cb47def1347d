"""What a connection that never authenticates costs the server: memory, threads and time.

    python bench/preauth_cost.py [SOURCE_TREE]

Starts ``python -m pastset.commands.server`` (from SOURCE_TREE if given, to
measure another version side by side) with a secret, then, one attack at a
time: 200 idle connections to the Pyro5 port; one ~400 KB zlib-compressed
MSG_CONNECT; one ~340 KB marshal MSG_CONNECT holding a set of hash-colliding
complex numbers; one channel handshake nesting 3000 tuples.  For each it
prints the server's RSS and thread growth (from /proc/PID/status) and how long
the server took to answer or close the connection.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import msgpack
import Pyro5.protocol
import Pyro5.serializers


def status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def message(serializer: int, body: bytes, flags: int = 0) -> bytes:
    header = struct.pack(
        Pyro5.protocol._header_format, b"PYRO", Pyro5.protocol.PROTOCOL_VERSION, Pyro5.protocol.MSG_CONNECT,
        serializer, flags, 0, len(body), 0, bytes(16), 0, Pyro5.protocol._magic_number,
    )  # fmt: skip
    return header + body


def answered(addr: tuple[str, int], data: bytes) -> float:
    """Seconds from sending ``data`` on a new connection until the server replies or closes it."""
    with socket.create_connection(addr, timeout=120) as sock:
        start = time.perf_counter()
        with contextlib.suppress(OSError):
            sock.sendall(data)
        with contextlib.suppress(OSError):
            sock.recv(65536)
        return time.perf_counter() - start


def main() -> None:
    tree = sys.argv[1] if len(sys.argv) > 1 else ""
    env = dict(os.environ, PSSECRET="bench-secret", PSBIN="/tmp")
    if tree:
        env["PYTHONPATH"] = tree
    proc = subprocess.Popen(
        [sys.executable, "-m", "pastset.commands.server", "--run", "bench", "--host", "127.0.0.1", "--port", "0",
         "--ready"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, cwd=tree or None,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        host, _, port = line.split()[1].rpartition(":")
        pyro = (host, int(port))
        ms = Pyro5.serializers.serializers["msgpack"].serializer_id
        ma = Pyro5.serializers.serializers["marshal"].serializer_id
        print(f"server from {tree or 'this tree'}, pid {proc.pid}")

        rss, threads = status(proc.pid, "VmRSS"), status(proc.pid, "Threads")
        idle = [socket.create_connection(pyro, timeout=10) for _ in range(200)]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and status(proc.pid, "Threads") < threads + 200:
            select.select([], [], [], 0.1)  # let the server take them
        print(
            f"200 idle Pyro5 connections: +{(status(proc.pid, 'VmRSS') - rss) / 200:.1f} KiB and "
            f"+{(status(proc.pid, 'Threads') - threads) / 200:.2f} threads per connection"
        )
        for sock in idle:
            sock.close()

        attacks = [
            ("zlib bomb MSG_CONNECT (%d KB)", message(ms, zlib.compress(bytes(400 * 2**20), 9), flags=2)),
            (
                "marshal colliding set (%d KB)",
                message(ma, marshal.dumps({complex(-1000003 * k, k) for k in range(20000)})),
            ),
        ]
        for label, data in attacks:
            peak = status(proc.pid, "VmHWM")
            took = answered(pyro, data)
            grown = (status(proc.pid, "VmHWM") - peak) / 1024
            print(f"{label % (len(data) // 1000)}: {took * 1000:.1f} ms, peak RSS +{grown:.1f} MiB")

        env_client = dict(env, PSNS=f"{host}:{port}", PSRUN="bench")
        chan = subprocess.check_output(
            [sys.executable, "-c", "import pastset; p = pastset.PastSet(); print(*p._channel)"],
            env=env_client,
            text=True,
        ).split()
        body = msgpack.packb(1)
        for _ in range(3000):
            body = msgpack.packb(msgpack.ExtType(1, b"\x91" + body))
        took = answered((chan[0], int(chan[1])), struct.pack("!IH", len(body), 0) + body)
        alive = proc.poll() is None
        print(f"channel handshake nesting 3000 tuples ({len(body)} bytes): {took * 1000:.1f} ms, server "
              f"{'alive' if alive else f'died (exit {proc.returncode})'}")  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
