"""The direct channel: element operations over a plain framed TCP stream, beside Pyro5.

Every PastSet operation is one request and one reply of opaque bytes encoded
by :mod:`pastset.wire` (see :class:`pastset.server.SpaceService`).  Carried by
Pyro5, each such call also pays for Pyro5's message header, its msgpack
serializer wrapping the bytes once more, the proxy and the daemon dispatch:
measured here that was about 30 µs of a 110 µs move+observe pair, more than
the element and the codec together.  The channel carries the same bytes with
nothing but a 4-byte length in front, so a call costs one ``sendall`` and one
buffered read at each end.

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
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import Pyro5.callcontext

from . import wire
from .errors import PastSetConnectionError

__all__ = ["Channel", "ChannelServer", "Connection", "keep_alive_socket", "secret_matches"]

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")
#: Largest frame accepted (a request or a reply); larger values are refused before sending.
MAX_FRAME = 2**31
#: Seconds a new connection has to present its handshake.
HANDSHAKE_TIMEOUT = 10.0
_SMALL = 65536


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


def _send(sock: socket.socket, payload: bytes) -> None:
    if len(payload) < _SMALL:
        sock.sendall(HEADER.pack(len(payload)) + payload)
    else:  # no copy of a large payload just to put four bytes in front
        sock.sendall(HEADER.pack(len(payload)))
        sock.sendall(payload)


def _receive(rfile: Any, limit: int = MAX_FRAME) -> bytes | None:
    """One frame of at most ``limit`` bytes from a buffered reader; None at a clean end of stream."""
    header = rfile.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise ConnectionError("the stream ended inside a frame header")
    (size,) = HEADER.unpack(header)
    if size > limit:  # checked before reading: the reader allocates what the header claims
        raise ConnectionError(f"a frame of {size} bytes is over the limit of {limit}")
    payload: bytes = rfile.read(size)
    if len(payload) < size:
        raise ConnectionError("the stream ended inside a frame")
    return payload


class Connection:
    """What the server knows of one channel connection.

    It stands where Pyro5's connection object stands during a call
    (``Pyro5.callcontext.current_context.client``), so the task id and the
    leases held by the connection are found the same way on both transports.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pastset_task = ""
        self.pastset_leases: list[Any] = []

    def __repr__(self) -> str:
        try:
            return f"<channel connection from {self.sock.getpeername()}>"
        except OSError:
            return "<channel connection (closed)>"


class ChannelServer:
    """Listens for channels next to a Pyro5 daemon and serves each in its own thread.

    ``services`` maps a run name to the callable that runs one encoded request
    (``SpaceService.call``); ``closed`` is told when a connection ends, so the
    server can hand back its leases.
    """

    def __init__(
        self,
        host: str,
        secret: str,
        services: Callable[[str], Callable[[bytes], bytes] | None],
        closed: Callable[[Connection], None],
        deadtime: float = 6.0,
    ) -> None:
        self.secret = secret
        self._services = services
        self._closed = closed
        self._deadtime = deadtime
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family, backlog=1024)
        self.port = int(self._sock.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="channel-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock,), name="channel", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Connection(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive_socket(sock, self._deadtime)
            rfile = sock.makefile("rb")
            call = self._handshake(sock, rfile, conn)
            if call is None:
                return
            Pyro5.callcontext.current_context.client = conn
            while True:
                request = _receive(rfile)
                if request is None:
                    return
                _send(sock, call(request))
        except (OSError, ValueError) as err:
            log.debug("channel %r ended: %s", conn, err)
        finally:
            Pyro5.callcontext.current_context.client = None
            with self._lock:
                self._open.discard(sock)
            try:
                sock.close()
            except OSError:  # pragma: no cover
                pass
            self._closed(conn)

    def _handshake(self, sock: socket.socket, rfile: Any, conn: Connection) -> Callable[[bytes], bytes] | None:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            frame = _receive(rfile, _SMALL)
            hello = wire.decode(frame) if frame is not None else None
        except (wire.SerialisationError, ConnectionError, OSError, ValueError):
            hello = None
        sock.settimeout(None)
        if not isinstance(hello, dict):
            log.info("closed a channel from %s: no handshake", _peer(sock))
            return None
        if not secret_matches(self.secret, hello.get("secret")):
            log.warning("refused a channel without the run's secret from %s", _peer(sock))
            _send(sock, wire.encode((1, "this PastSet run needs its secret")))
            return None
        run = hello.get("run")
        call = self._services(run) if isinstance(run, str) else None
        if call is None:
            _send(sock, wire.encode((1, f"no PastSet named {run!r} on this server")))
            return None
        task = hello.get("task")
        if isinstance(task, str):
            conn.pastset_task = task
        _send(sock, wire.encode((0, "pastset")))
        return call

    def close(self) -> None:
        """Stop accepting and end every open channel (their threads then finish)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            open_, self._open = list(self._open), set()
        for sock in open_:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


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
            _send(self._sock, wire.encode({"secret": secret, "task": task, "run": run}))
            frame = _receive(self._rfile)
        except OSError as err:
            self.close()
            raise PastSetConnectionError(f"the PastSet channel at {where} failed: {err}") from None
        reply = wire.decode(frame) if frame is not None else (1, "the server closed the channel")
        if reply[0] != 0:
            self.close()
            raise PastSetConnectionError(f"the PastSet server at {where} refused the channel: {reply[1]}")
        self._sock.settimeout(None)

    def call(self, request: bytes) -> bytes:
        """Send one encoded request and wait for its reply; ConnectionError if the stream breaks."""
        if len(request) > MAX_FRAME:
            raise wire.SerialisationError(f"a request of {len(request)} bytes is over the limit of {MAX_FRAME}")
        _send(self._sock, request)
        reply = _receive(self._rfile)
        if reply is None:
            raise ConnectionError("the server closed the connection")
        return reply

    def close(self) -> None:
        """Close the connection; a call blocked in another thread then fails."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
