"""Guards for the Pyro5 port: nothing a connection sends before its handshake passed costs a thread.

Pyro5's thread-pool server hands every accepted connection to a pool thread,
which then waits, without a timeout, for the ``MSG_CONNECT`` message; reads it
whole (up to ``MAX_MESSAGE_SIZE``, 1 GiB); decompresses it if its flags say so;
and decodes it with whichever serializer its header names (``marshal``
included) before :meth:`validateHandshake` sees it.  When the pool is full, the
accept loop itself reads the refused connection's handshake, so one idle
connection then stops every new one.  Measured on the unguarded server: a ~400 KB
zlib bomb made it allocate ~790 MiB, a ~340 KB marshal set of hash-colliding
complex numbers froze it for 7 s, and idle connections held threads forever.

Here the accept loop reads every new connection's first message itself, from
non-blocking sockets, next to accepting (so it never blocks):

- at most :data:`HANDSHAKE_MAX` bytes, within :data:`HANDSHAKE_TIMEOUT` seconds
  of the accept (a slow or idle connection is closed then);
- at most :data:`MAX_PENDING` connections wait for their handshake at once
  (a new one beyond that closes the oldest);
- the header must say ``MSG_CONNECT``, the msgpack serializer, and no
  compression, or the connection is refused before any of its body is read.

Only then does a pool thread get the connection, with the message already in
hand.  Every later message's header is checked the same way (msgpack only, no
compression, no pre-serialized blobs) before its body is read.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import ssl
import struct
import time
from typing import Any

import Pyro5.errors
import Pyro5.protocol
import Pyro5.serializers
import Pyro5.socketutil
import Pyro5.svr_threads
from Pyro5 import config as pyro_config

__all__ = ["HANDSHAKE_MAX", "HANDSHAKE_TIMEOUT", "MAX_PENDING", "GuardedDaemon", "check_header", "guard"]

log = logging.getLogger(__name__)

#: Largest first message (header included) a connection may send before its handshake passed.
HANDSHAKE_MAX = 8 * 1024
#: Seconds a new connection has to deliver its whole handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Connections that may be waiting for their handshake at once; a new one beyond closes the oldest.
MAX_PENDING = 256

_HEADER = struct.Struct(Pyro5.protocol._header_format)
_MSGPACK = Pyro5.serializers.serializers["msgpack"].serializer_id
_REFUSED_FLAGS = Pyro5.protocol.FLAGS_COMPRESSED | Pyro5.protocol.FLAGS_KEEPSERIALIZED


def check_header(header: bytes, first: bool) -> int:
    """The body size a Pyro5 message header announces, or ProtocolError saying why it is refused.

    ``first``: the connection's first message, which must be a small MSG_CONNECT.
    """
    Pyro5.protocol.ReceivingMessage.validate(header)
    _, _, kind, serializer, flags, _, data_size, annotations_size, _, _, _ = _HEADER.unpack(header)
    if kind != Pyro5.protocol.MSG_PING and serializer != _MSGPACK:
        raise Pyro5.errors.ProtocolError(
            "this PastSet server speaks only Pyro5's msgpack serializer (set the proxy's _pyroSerializer or "
            "PYRO_SERIALIZER to msgpack)"
        )
    if flags & _REFUSED_FLAGS:
        raise Pyro5.errors.ProtocolError("this PastSet server accepts no compressed or pre-serialized messages")
    if first:
        if kind != Pyro5.protocol.MSG_CONNECT:
            raise Pyro5.errors.ProtocolError("the first message must be the connection handshake")
        if _HEADER.size + data_size + annotations_size > HANDSHAKE_MAX:
            raise Pyro5.errors.ProtocolError(f"a handshake is at most {HANDSHAKE_MAX} bytes")
    return int(data_size + annotations_size)


class _GuardedConnection(Pyro5.socketutil.SocketConnection):
    """A pool thread's connection: the handshake already read, and every later header checked first.

    Pyro5 reads a message as recv(6), recv(34) (the rest of the header), then
    recv(body): the header is checked when its last byte arrives.
    """

    def __init__(self, sock: socket.socket, prefetched: bytes) -> None:
        super().__init__(sock)
        self._prefetched = memoryview(prefetched)
        self._head = b""
        self._phase = 0  # 0: header start, 1: header rest, 2: body

    def recv(self, size: int) -> bytes:
        if self._prefetched.nbytes:
            data = bytes(self._prefetched[:size])
            self._prefetched = self._prefetched[size:]
            if len(data) < size:
                data += super().recv(size - len(data))
        else:
            data = super().recv(size)
        if self._phase == 0:
            self._head = data
            self._phase = 1
        elif self._phase == 1:
            self._phase = 2
            try:
                check_header(self._head + data, first=False)
            except Pyro5.errors.ProtocolError as err:
                log.warning("closed a Pyro5 connection from %s: %s", _peer(self.sock), err)
                raise Pyro5.errors.SecurityError(str(err)) from None
        else:
            self._phase = 0
        return data


class _Pending:
    __slots__ = ("addr", "buf", "deadline", "need", "sock")

    def __init__(self, sock: socket.socket, addr: Any) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        self.need = -1  # the whole message's size, once its header is in


class _GuardedThreadpool(Pyro5.svr_threads.SocketServer_Threadpool):
    """Pyro5's thread-pool server whose accept loop also reads every handshake (see the module)."""

    _pending: collections.OrderedDict[socket.socket, _Pending]

    def events(self, eventsockets: Any) -> None:
        for key, _ in self._selector.select(pyro_config.POLLTIMEOUT):
            if key.data is self:
                self._accept()
            else:
                self._read(key.data)
        now = time.monotonic()
        for pending in [p for p in self._pending.values() if p.deadline < now]:
            self._drop(pending, f"no handshake within {HANDSHAKE_TIMEOUT:g} s")

    def _accept(self) -> None:
        try:
            csock, caddr = self.sock.accept()
        except (TimeoutError, BlockingIOError, InterruptedError):
            return
        if self.shutting_down:
            csock.close()
            return
        # Pyro5's own line for each accepted connection, as its accept loop writes it.
        Pyro5.svr_threads.log.debug(
            "connected %s - %s", caddr, "SSL" if hasattr(csock, "getpeercert") else "unencrypted"
        )
        try:
            csock.setblocking(False)
        except OSError:
            csock.close()
            return
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending.values()))
            self._drop(oldest, f"more than {MAX_PENDING} connections were waiting for their handshake")
        pending = _Pending(csock, caddr)
        self._pending[csock] = pending
        self._selector.register(csock, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> None:
        sock = pending.sock
        while True:
            want = (pending.need if pending.need >= 0 else HANDSHAKE_MAX) - len(pending.buf)
            try:
                data = sock.recv(max(want, 1))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except OSError as err:
                self._drop(pending, str(err), quiet=True)
                return
            if not data:
                self._drop(pending, "closed before its handshake", quiet=True)
                return
            pending.buf += data
            if pending.need < 0 and len(pending.buf) >= 6:
                try:
                    if len(pending.buf) < _HEADER.size:
                        Pyro5.protocol.ReceivingMessage.validate(bytes(pending.buf))
                    else:
                        pending.need = _HEADER.size + check_header(bytes(pending.buf[: _HEADER.size]), first=True)
                except (Pyro5.errors.ProtocolError, ValueError) as err:
                    self._refuse(pending, str(err))
                    return
            if pending.need >= 0 and len(pending.buf) >= pending.need:
                self._start(pending)
                return
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    def _start(self, pending: _Pending) -> None:
        """The whole handshake is in: a pool thread takes the connection from here."""
        self._forget(pending)
        sock = pending.sock
        try:
            sock.setblocking(True)
            if pyro_config.COMMTIMEOUT:
                sock.settimeout(pyro_config.COMMTIMEOUT)
        except OSError:
            sock.close()
            return
        # Built field by field: its constructor's own SocketConnection would close the socket when dropped.
        job = Pyro5.svr_threads.ClientConnectionJob.__new__(Pyro5.svr_threads.ClientConnectionJob)
        job.csock = _GuardedConnection(sock, bytes(pending.buf))
        job.caddr = pending.addr
        job.daemon = self.daemon
        try:
            self.pool.process(job)
        except Pyro5.svr_threads.NoFreeWorkersError:
            log.warning("refused a Pyro5 connection from %s: every worker thread is busy", _peer(sock))
            _fail(sock, "the PastSet server has no free worker thread; try again later")
            sock.close()

    def _refuse(self, pending: _Pending, reason: str) -> None:
        log.warning("refused a Pyro5 connection from %s: %s", _peer(pending.sock), reason)
        _fail(pending.sock, reason)
        self._drop(pending, reason, quiet=True)

    def _forget(self, pending: _Pending) -> None:
        self._pending.pop(pending.sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(pending.sock)

    def _drop(self, pending: _Pending, reason: str, quiet: bool = False) -> None:
        if not quiet:
            log.info("closed a Pyro5 connection from %s: %s", _peer(pending.sock), reason)
        self._forget(pending)
        with contextlib.suppress(OSError):
            pending.sock.close()

    def close(self) -> None:
        for pending in list(self._pending.values()):
            self._drop(pending, "the server is closing", quiet=True)
        super().close()


def _fail(sock: socket.socket, reason: str) -> None:
    """Tell a refused client why, if its socket takes the few bytes at once (never waits)."""
    try:
        data = Pyro5.serializers.serializers["msgpack"].dumps(reason)
        msg = Pyro5.protocol.SendingMessage(Pyro5.protocol.MSG_CONNECTFAIL, 0, 0, _MSGPACK, data)
        sock.setblocking(False)
        sock.send(msg.data)
    except (OSError, ValueError):
        pass


def _peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


def guard(server: Any) -> None:
    """Turn a running Pyro5 thread-pool transport server into the guarded one, in place.

    Pyro5's Daemon builds its transport server itself; changing the class of
    that instance keeps its listening socket, pool and housekeeper as they are.
    """
    if type(server) is not Pyro5.svr_threads.SocketServer_Threadpool:
        raise TypeError(f"cannot guard a Pyro5 transport server of type {type(server).__name__}")
    server.__class__ = _GuardedThreadpool
    server._pending = collections.OrderedDict()


class GuardedDaemon:
    """Mix in before a Pyro5 Daemon class: its port gets the guards of this module."""

    transportServer: Any  # noqa: N815 - Pyro5 API

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        guard(self.transportServer)
