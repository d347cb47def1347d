"""The server side of the direct channel: one event loop for every connection.

With a thread per connection, every request woke its own thread, and the
threads took turns at Python's interpreter lock: with a handful of busy
clients the server spent more of its CPU time handing the lock around than on
the requests (measured: 76 µs of server CPU per move+observe pair with four
clients, against 10 µs for the same work in a tight loop).  Here one thread
waits on all connections at once (epoll, or ``selectors`` elsewhere), reads whatever arrived, and
runs each complete request itself — when it can finish without waiting.

A request that would block (an observe of an empty element, a move that delta
holds back, anything on an element with an X-function, which may wait inside
its override) is handed to a thread of its own, exactly as before: that
connection is left out of the loop until the thread has sent the reply, so a
client's requests are still answered in order, and a blocked observe holds up
no one.  Whether a request would block is decided under the element's lock
and the request then runs under it (:meth:`pastset.server.host.SpaceService.try_parts`),
so nothing the loop runs ever waits.

Replies the socket cannot take at once (a large array to a slow reader) are
finished by a thread too, so a slow reader never holds up the loop.
"""

from __future__ import annotations

import collections
import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import Pyro5.callcontext

from pastset import wire
from pastset.transport.channel import (
    HANDSHAKE_TIMEOUT,
    MAX_FRAME,
    SMALL,
    keep_alive_socket,
    parse_frame,
    secret_matches,
    send_frame,
    small_frame,
)

__all__ = ["ChannelServer", "Connection", "Serve"]

log = logging.getLogger(__name__)

#: How a server runs one request without waiting: (body, buffers) -> the reply's
#: [body, buffer, ...], or a function that completes it in a thread of its own.
Serve = Callable[[bytes, list[bytearray]], Any]

_READ = 256 * 1024


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


class _Link:
    """The loop's state of one connection."""

    __slots__ = ("accepted", "busy", "conn", "dead", "inbox", "serve", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = Connection(sock)
        self.inbox = bytearray()
        self.serve: Serve | None = None  # set once the handshake passed
        self.accepted = time.monotonic()
        self.busy = False  # a thread owns the connection (a waiting request, or a long reply)
        self.dead = False


class _Poller:
    """Readiness of many sockets: epoll where there is one (Linux), else :mod:`selectors`.

    epoll is used directly because the loop wakes twice per move+observe pair,
    and ``selectors``' bookkeeping around each wake-up was a few microseconds of it.
    """

    def __init__(self, epoll: bool = hasattr(select, "epoll")) -> None:
        self._epoll = select.epoll() if epoll else None
        self._selector = selectors.DefaultSelector() if self._epoll is None else None
        self._data: dict[int, Any] = {}

    def register(self, sock: socket.socket, data: Any) -> None:
        fd = sock.fileno()
        self._data[fd] = data
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_READ, data)

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._data.pop(fd, _MISSING) is _MISSING:
            return
        if self._epoll is not None:
            self._epoll.unregister(fd)
        else:
            assert self._selector is not None
            self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[Any]:
        """The data of the sockets ready to read (``timeout`` None: wait as long as it takes)."""
        if self._epoll is not None:
            data = self._data
            return [data[fd] for fd, _ in self._epoll.poll(-1 if timeout is None else timeout) if fd in data]
        assert self._selector is not None
        return [key.data for key, _ in self._selector.select(timeout)]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:
            self._selector.close()


_MISSING = object()


class ChannelServer:
    """Listens for channels next to a Pyro5 daemon and serves them all from one event loop.

    ``services`` maps a run name to the callable that runs one request (see
    :data:`Serve`); ``closed`` is told when a connection ends, so the server
    can hand back its leases.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        services: Callable[[str], Serve | None],
        closed: Callable[[Connection], None],
        deadtime: float = 6.0,
    ) -> None:
        self.secret = secret
        self._services = services
        self._closed = closed
        self._deadtime = deadtime
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=1024)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._poller = _Poller()
        self._poller.register(self._sock, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller.register(self._wake_r, "wake")
        self._links: dict[socket.socket, _Link] = {}
        self._greeting: set[_Link] = set()  # accepted, handshake not yet received
        self._returned: collections.deque[_Link] = collections.deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="channel-loop", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        try:
            while not self._stopping:
                waiting_handshake = bool(self._greeting)
                for ready in self._poller.poll(1.0 if waiting_handshake else None):
                    if ready is None:
                        self._accept()
                    elif ready == "wake":
                        self._drain_wakeups()
                    else:
                        self._readable(ready)
                if waiting_handshake:
                    self._expire_handshakes()
        except Exception:  # pragma: no cover - a bug: say so, and close what we hold
            log.exception("the channel's event loop failed")
        finally:
            for link in list(self._links.values()):
                self._drop(link)
            self._poller.close()
            for sock in (self._sock, self._wake_r, self._wake_w):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if not self._stopping:
                    log.warning("channel: cannot accept a connection: %s", err)
                return
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                keep_alive_socket(sock, self._deadtime)
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            link = _Link(sock)
            self._links[sock] = link
            self._greeting.add(link)
            self._poller.register(sock, link)

    def _readable(self, link: _Link) -> None:
        try:
            data = link.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.debug("channel %r ended: %s", link.conn, err)
            self._drop(link)
            return
        if not data:
            self._drop(link)
            return
        link.inbox += data
        self._work(link)

    def _work(self, link: _Link) -> None:
        """Answer every complete request in the connection's inbox, until one needs a thread."""
        while not link.busy and not link.dead:
            try:
                frame = parse_frame(link.inbox, MAX_FRAME if link.serve is not None else SMALL)
            except ConnectionError as err:
                log.info("closed a channel from %s: %s", _peer(link.sock), err)
                self._drop(link)
                return
            if frame is None:
                return
            body, buffers = frame
            if link.serve is None:
                self._handshake(link, body)
                continue
            Pyro5.callcontext.current_context.client = link.conn
            try:
                result = link.serve(body, buffers)
            finally:
                Pyro5.callcontext.current_context.client = None
            if callable(result):
                self._hand_off(link, result)
            else:
                self._reply(link, result)

    def _handshake(self, link: _Link, body: bytes) -> None:
        try:
            hello = wire.decode(body)
        except wire.SerialisationError:
            hello = None
        if not isinstance(hello, dict):
            log.info("closed a channel from %s: no handshake", _peer(link.sock))
            self._drop(link)
            return
        if not secret_matches(self.secret, hello.get("secret")):
            log.warning("refused a channel without the run's secret from %s", _peer(link.sock))
            self._reply(link, [wire.encode((1, "this PastSet run needs its secret"))], then_close=True)
            return
        run = hello.get("run")
        serve = self._services(run) if isinstance(run, str) else None
        if serve is None:
            self._reply(link, [wire.encode((1, f"no PastSet named {run!r} on this server"))], then_close=True)
            return
        task = hello.get("task")
        if isinstance(task, str):
            link.conn.pastset_task = task
        link.serve = serve
        self._greeting.discard(link)
        self._reply(link, [wire.encode((0, "pastset"))])

    def _expire_handshakes(self) -> None:
        now = time.monotonic()
        for link in [link for link in self._greeting if not link.busy]:
            if now - link.accepted > HANDSHAKE_TIMEOUT:
                log.info("closed a channel from %s: no handshake within %g s", _peer(link.sock), HANDSHAKE_TIMEOUT)
                self._drop(link)

    # --------------------------------------------------------------- replies
    def _reply(self, link: _Link, parts: list[bytes | memoryview], then_close: bool = False) -> None:
        """Send a small reply now; a thread sends a large one, or what the socket did not take at once."""
        if len(parts) > 1 or len(parts[0]) >= SMALL:
            self._hand_off(link, lambda: parts, then_close=then_close)
            return
        data = small_frame(parts[0])
        try:
            sent = link.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(link)
            return
        if sent == len(data):
            if then_close:
                self._drop(link)
            return
        rest = memoryview(data)[sent:]
        self._hand_off(link, lambda: [rest], raw=True, then_close=then_close)

    def _hand_off(self, link: _Link, finish: Callable[[], Any], raw: bool = False, then_close: bool = False) -> None:
        """Give the connection to a thread that runs ``finish`` and sends its reply, then returns it to the loop."""
        link.busy = True
        self._poller.unregister(link.sock)

        def run() -> None:
            Pyro5.callcontext.current_context.client = link.conn
            try:
                parts = finish()
                link.sock.setblocking(True)
                if raw:
                    link.sock.sendall(parts[0])
                else:
                    send_frame(link.sock, parts)
                link.sock.setblocking(False)
            except OSError as err:
                log.debug("channel %r ended: %s", link.conn, err)
                link.dead = True
            except Exception:  # pragma: no cover - a bug in a request: the connection cannot go on
                log.exception("error while serving a channel request")
                link.dead = True
            finally:
                Pyro5.callcontext.current_context.client = None
            if then_close:
                link.dead = True
            self._returned.append(link)
            try:
                self._wake_w.send(b"!")
            except OSError:
                pass  # the wake-up pipe is full (the loop will drain it) or closed (stopping)

        threading.Thread(target=run, name="channel-wait", daemon=True).start()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            link = self._returned.popleft()
            link.busy = False
            if link.dead or self._stopping:
                self._drop(link)
                continue
            self._poller.register(link.sock, link)
            self._work(link)  # requests that arrived meanwhile wait in its inbox

    def _drop(self, link: _Link) -> None:
        if link.sock not in self._links:
            return
        del self._links[link.sock]
        self._greeting.discard(link)
        link.dead = True
        if not link.busy:
            try:
                self._poller.unregister(link.sock)
            except (KeyError, ValueError):
                pass
        try:
            link.sock.close()
        except OSError:  # pragma: no cover
            pass
        self._closed(link.conn)

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop accepting and end every open channel (threads waiting in requests end with the run)."""
        self._stopping = True
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        self._thread.join(5)


def _peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
