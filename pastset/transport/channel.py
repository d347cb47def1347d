"""The direct channel: element operations over a plain framed TCP stream, beside Pyro5.

Every PastSet operation is one request and one reply of opaque bytes encoded
by :mod:`pastset.wire` (see :class:`pastset.server.host.SpaceService`).  Carried by
Pyro5, each such call also pays for Pyro5's message header, its msgpack
serializer wrapping the bytes once more, the proxy and the daemon dispatch:
measured here that was about 30 µs of a 110 µs move+observe pair, more than
the element and the codec together.  The channel carries the same bytes with
nothing but a short header in front, so a call costs one ``sendall`` and one
buffered read at each end.  The server's end, one event loop for all
connections, is :mod:`pastset.transport.channel_server`; this module holds the frames,
the handshake check and the client's end.

A frame is a 6-byte header (body length, number of out-of-band buffers), one
8-byte length per buffer, the body, then the buffers: large NumPy arrays travel
beside the body (:func:`pastset.wire.encode_parts`), sent straight from the
array's memory and received into the memory the decoded array then uses.

Pyro5 stays what finds things and runs everything else: the name server, the
scheduler, control and monitoring.  A client asks the space (through Pyro5)
where its channel listens, then opens one channel per thread.  The first frame
on a channel is a handshake carrying the run's secret and the task id, checked
exactly as Pyro5's handshake is; nothing is read as a request before it passed.
Frames are decoded by :mod:`pastset.wire` only (msgpack; nothing is unpickled).

The channel is switched off when Pyro5's TLS is on (``PYRO_SSL``), so that an
encrypted run sends every byte through Pyro5's TLS.
"""

from __future__ import annotations

import hmac
import socket
import struct
from typing import Any

from pastset import wire
from pastset.errors import PastSetConnectionError

__all__ = ["Channel", "keep_alive_socket", "parse_frame", "secret_matches", "send_frame", "small_frame"]

HEADER = struct.Struct("!IH")
LENGTH = struct.Struct("!Q")
#: Largest frame accepted (body and buffers together); larger values are refused before sending.
MAX_FRAME = 2**31
#: Most out-of-band buffers in one frame.
MAX_BUFFERS = 4096
_NO_BUFFERS = struct.Struct("!I2x")  # HEADER with a buffer count of 0, packed from the size alone
#: Seconds a new connection has to present its handshake.
HANDSHAKE_TIMEOUT = 10.0
SMALL = 65536


def secret_matches(secret: str, offered: object) -> bool:
    """True if a connection may proceed: the run has no secret, or ``offered`` is it (constant time)."""
    return not secret or (isinstance(offered, str) and hmac.compare_digest(offered.encode(), secret.encode()))


def keep_alive_socket(sock: socket.socket, seconds: float) -> None:
    """Let TCP keepalive notice, within about ``seconds``, a peer that vanished without a reset."""
    half = max(1, int(seconds / 2))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", half), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", half)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def send_frame(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send one frame: ``parts[0]`` is the body, the rest its out-of-band buffers."""
    body = parts[0]
    if len(parts) == 1:  # the common case: no buffers
        if len(body) < SMALL:
            sock.sendall(_NO_BUFFERS.pack(len(body)) + body)
        else:
            sock.sendall(_NO_BUFFERS.pack(len(body)))
            sock.sendall(body)
        return
    buffers = parts[1:]
    sock.sendall(HEADER.pack(len(body), len(buffers)) + b"".join([LENGTH.pack(len(b)) for b in buffers]))
    for part in parts:  # no copy of a large body or array just to put a header in front
        sock.sendall(part)


def small_frame(body: bytes | memoryview) -> bytes:
    """A whole frame, as bytes, for a body without buffers."""
    return _NO_BUFFERS.pack(len(body)) + body


def parse_frame(inbox: bytearray, limit: int = MAX_FRAME) -> tuple[bytes, list[bytearray]] | None:
    """Take one complete frame off the front of ``inbox``: (body, buffers); None if it is not all there yet.

    Raises ConnectionError for a frame that breaks the limits, before waiting for its bytes.
    """
    have = len(inbox)
    if have < HEADER.size:
        return None
    size, count = HEADER.unpack_from(inbox)
    if count > MAX_BUFFERS:
        raise ConnectionError(f"a frame with {count} buffers is over the limit of {MAX_BUFFERS}")
    start = HEADER.size + LENGTH.size * count
    if have < start:
        return None
    lengths = [LENGTH.unpack_from(inbox, HEADER.size + i * LENGTH.size)[0] for i in range(count)]
    total = size + sum(lengths)
    if total > limit:
        raise ConnectionError(f"a frame of {total} bytes is over the limit of {limit}")
    if have < start + total:
        return None
    body = bytes(inbox[start : start + size])
    buffers, offset = [], start + size
    for length in lengths:
        buffers.append(inbox[offset : offset + length])
        offset += length
    del inbox[:offset]
    return body, buffers


def _receive(rfile: Any, limit: int = MAX_FRAME) -> tuple[bytes, list[bytearray]] | None:
    """One frame of at most ``limit`` bytes: (body, buffers); None at a clean end of stream."""
    head = rfile.read(HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise ConnectionError("the stream ended inside a frame header")
    size, count = HEADER.unpack(head)
    if not count:  # the common case: no buffers
        if size > limit:
            raise ConnectionError(f"a frame of {size} bytes is over the limit of {limit}")
        body = rfile.read(size)
        if len(body) < size:
            raise ConnectionError("the stream ended inside a frame")
        return body, []
    if count > MAX_BUFFERS:
        raise ConnectionError(f"a frame with {count} buffers is over the limit of {MAX_BUFFERS}")
    table = rfile.read(LENGTH.size * count)
    if len(table) < LENGTH.size * count:
        raise ConnectionError("the stream ended inside a frame header")
    lengths = [LENGTH.unpack_from(table, i * LENGTH.size)[0] for i in range(count)]
    if size + sum(lengths) > limit:  # checked before reading: the reader allocates what the header claims
        raise ConnectionError(f"a frame of {size + sum(lengths)} bytes is over the limit of {limit}")
    body = rfile.read(size)
    if len(body) < size:
        raise ConnectionError("the stream ended inside a frame")
    buffers = []
    for length in lengths:
        buf = bytearray(length)
        view, got = memoryview(buf), 0
        while got < length:
            n = rfile.readinto(view[got:])
            if not n:
                raise ConnectionError("the stream ended inside a frame")
            got += n
        buffers.append(buf)
    return body, buffers


class Channel:
    """One client end of a channel: ``call(request) -> reply`` as with a Pyro5 proxy of the space.

    Not shared between threads: :class:`pastset.client.PastSet` opens one per thread.
    """

    def __init__(
        self, host: str, port: int, run: str, secret: str, task: str, deadtime: float, timeout: float = 10.0
    ) -> None:
        where = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise PastSetConnectionError(f"cannot open the PastSet channel at {where}: {err}") from None
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive_socket(self._sock, deadtime)
            self._rfile = self._sock.makefile("rb")
            send_frame(self._sock, [wire.encode({"secret": secret, "task": task, "run": run})])
            frame = _receive(self._rfile)
        except OSError as err:
            self.close()
            raise PastSetConnectionError(f"the PastSet channel at {where} failed: {err}") from None
        reply = wire.decode(frame[0]) if frame is not None else (1, "the server closed the channel")
        if reply[0] != 0:
            self.close()
            raise PastSetConnectionError(f"the PastSet server at {where} refused the channel: {reply[1]}")
        self._sock.settimeout(None)

    def exchange(self, parts: list[bytes | memoryview]) -> tuple[bytes, list[bytearray]]:
        """Send one request (body and buffers) and wait for the reply's; ConnectionError if the stream breaks."""
        size = len(parts[0]) if len(parts) == 1 else sum(len(part) for part in parts)
        if size > MAX_FRAME or len(parts) > MAX_BUFFERS:
            raise wire.SerialisationError(
                f"a request of {size} bytes in {len(parts)} parts is over the limit of {MAX_FRAME} bytes"
            )
        send_frame(self._sock, parts)
        reply = _receive(self._rfile)
        if reply is None:
            raise ConnectionError("the server closed the connection")
        return reply

    def call(self, request: bytes) -> bytes:
        """One request already encoded in band, as with a Pyro5 proxy of the space; the reply's body."""
        return self.exchange([request])[0]

    def close(self) -> None:
        """Close the connection; a call blocked in another thread then fails."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
