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
where its channel listens, then opens one channel per thread.  A channel
starts with a handshake in a small fixed binary format (:data:`HELLO`: the
run's secret, the run, the task id, the client's host, application and pid),
read without the general codec and capped at :data:`HELLO_MAX` bytes; the
secret is checked exactly as Pyro5's handshake checks it, and nothing is read as
a request before it passed.  The answer (:data:`WELCOME`) carries the largest
request the server takes (PSMAXINFLIGHT), so a larger one is refused on the
caller's side.  Frames are decoded by :mod:`pastset.wire` only (msgpack;
nothing is unpickled).

The channel is switched off when Pyro5's TLS is on (``PYRO_SSL``), so that an
encrypted run sends every byte through Pyro5's TLS.
"""

from __future__ import annotations

import hmac
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

from pastset import wire
from pastset.errors import PastSetConnectionError

__all__ = [
    "Channel",
    "Hello",
    "encode_hello",
    "encode_welcome",
    "frame_size",
    "frame_views",
    "keep_alive_socket",
    "parse_frame",
    "parse_hello",
    "secret_matches",
    "send_frame",
    "small_frame",
]

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

#: The handshake: magic and version, then the lengths of secret, run, task, host
#: and app (UTF-8), the client's pid, and those strings.  A fixed binary format
#: read without the general codec, so nothing before authentication decodes
#: anything nested.
HELLO = struct.Struct("!4sHHHHHI")
HELLO_MAGIC = b"PSC\x01"
#: Largest handshake accepted, header included.
HELLO_MAX = 4096
#: The server's answer: magic, status (0: welcome), largest request it takes, message length; the message.
WELCOME = struct.Struct("!4sBQH")


@dataclass
class Hello:
    """What a client says when it opens a channel."""

    secret: str
    run: str
    task: str
    host: str
    app: str
    pid: int


def encode_hello(hello: Hello) -> bytes:
    """The handshake bytes for ``hello`` (ValueError if it is over :data:`HELLO_MAX`)."""
    parts = [text.encode() for text in (hello.secret, hello.run, hello.task, hello.host, hello.app)]
    data = HELLO.pack(HELLO_MAGIC, *(len(p) for p in parts), hello.pid & 0xFFFFFFFF) + b"".join(parts)
    if len(data) > HELLO_MAX:
        raise ValueError(f"a channel handshake of {len(data)} bytes is over the limit of {HELLO_MAX}")
    return data


def parse_hello(inbox: bytearray) -> Hello | None:
    """Take the handshake off the front of ``inbox``; None if not all there; ConnectionError if malformed."""
    if len(inbox) < HELLO.size:
        if not HELLO_MAGIC.startswith(bytes(inbox[:4])):
            raise ConnectionError("no PastSet channel handshake")
        return None
    magic, *lengths, pid = HELLO.unpack_from(inbox)
    if magic != HELLO_MAGIC:
        raise ConnectionError("no PastSet channel handshake (or one of another version)")
    total = HELLO.size + sum(lengths)
    if total > HELLO_MAX:
        raise ConnectionError(f"a handshake of {total} bytes is over the limit of {HELLO_MAX}")
    if len(inbox) < total:
        return None
    texts, offset = [], HELLO.size
    for length in lengths:
        try:
            texts.append(bytes(inbox[offset : offset + length]).decode())
        except UnicodeDecodeError:
            raise ConnectionError("a handshake with text that is not UTF-8") from None
        offset += length
    del inbox[:total]
    secret, run, task, host, app = texts
    return Hello(secret, run, task, host, app, pid)


def encode_welcome(status: int, max_request: int, message: str) -> bytes:
    """The server's answer to a handshake."""
    text = message.encode()[:4096]
    return WELCOME.pack(HELLO_MAGIC, status, max_request, len(text)) + text


def app_name() -> str:
    """This program's name as the server shows it: the basename of ``sys.argv[0]``."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""


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


def _layout(inbox: Any, limit: int) -> tuple[int, int, list[int]] | None:
    """Where a frame's body starts, its size and its buffers' lengths; None until the header is all there."""
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
    return start, size, lengths


def frame_size(inbox: Any, limit: int = MAX_FRAME) -> int | None:
    """The whole size of the frame at the front of ``inbox`` (header included); None until its header is there.

    Raises ConnectionError, as :func:`parse_frame` does, for a frame that breaks the limits.
    """
    layout = _layout(inbox, limit)
    return None if layout is None else layout[0] + layout[1] + sum(layout[2])


def parse_frame(inbox: bytearray, limit: int = MAX_FRAME) -> tuple[bytes, list[bytearray | memoryview]] | None:
    """Take one complete frame off the front of ``inbox``: (body, buffers); None if it is not all there yet.

    Raises ConnectionError for a frame that breaks the limits, before waiting for its bytes.
    """
    layout = _layout(inbox, limit)
    if layout is None:
        return None
    start, size, lengths = layout
    if len(inbox) < start + size + sum(lengths):
        return None
    body = bytes(inbox[start : start + size])
    buffers: list[bytearray | memoryview] = []
    offset = start + size
    for length in lengths:
        buffers.append(inbox[offset : offset + length])
        offset += length
    del inbox[:offset]
    return body, buffers


def frame_views(frame: Any) -> tuple[bytes, list[bytearray | memoryview]]:
    """A whole frame received into a buffer of its own: (body, views of its buffers), nothing copied but the body.

    The views keep ``frame`` alive as long as a value decoded from them (a NumPy
    array) does; they are writable if ``frame`` is.
    """
    if frame_size(frame, len(frame)) != len(frame):
        raise ConnectionError("a large frame does not hold what its header says")
    layout = _layout(frame, len(frame))
    assert layout is not None
    start, size, lengths = layout
    view = memoryview(frame)
    body = bytes(view[start : start + size])
    buffers: list[bytearray | memoryview] = []
    offset = start + size
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
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
        self,
        host: str,
        port: int,
        run: str,
        secret: str,
        task: str,
        deadtime: float,
        timeout: float = 10.0,
        app: str | None = None,
    ) -> None:
        where = f"{host}:{port}"
        #: the largest request the server takes (it said so in the handshake)
        self.max_request = MAX_FRAME
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise PastSetConnectionError(f"cannot open the PastSet channel at {where}: {err}") from None
        hello = Hello(secret, run, task, socket.gethostname(), app if app is not None else app_name(), os.getpid())
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive_socket(self._sock, deadtime)
            self._rfile = self._sock.makefile("rb")
            self._sock.sendall(encode_hello(hello))
            head = self._rfile.read(WELCOME.size)
            if len(head) < WELCOME.size:
                status, message = 1, "the server closed the channel"
            else:
                magic, status, self.max_request, length = WELCOME.unpack(head)
                message = self._rfile.read(length).decode(errors="replace")
                if magic != HELLO_MAGIC:
                    status, message = 1, "the server speaks another version of the channel"
        except (OSError, ValueError) as err:
            self.close()
            raise PastSetConnectionError(f"the PastSet channel at {where} failed: {err}") from None
        if status != 0:
            self.close()
            raise PastSetConnectionError(f"the PastSet server at {where} refused the channel: {message}")
        self._sock.settimeout(None)

    def exchange(self, parts: list[bytes | memoryview]) -> tuple[bytes, list[bytearray]]:
        """Send one request (body and buffers) and wait for the reply's; ConnectionError if the stream breaks."""
        size = len(parts[0]) if len(parts) == 1 else sum(len(part) for part in parts)
        if size > self.max_request or len(parts) > MAX_BUFFERS:
            raise wire.SerialisationError(
                f"a request of {size} bytes in {len(parts)} parts is over the server's limit of "
                f"{self.max_request} bytes (PSMAXINFLIGHT on the server; at most {MAX_BUFFERS} parts)"
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
