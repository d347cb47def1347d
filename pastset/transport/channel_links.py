"""One channel connection as the server's loop keeps it, and what its delivery promise rests on.

Delivery.  An unindexed observe takes its tuple only for a connection that is
alive (checked just before, without reading).  After the reply went out it
stays *unconfirmed* until the next request arrives on that connection: if the
connection then ends with a reset, or with unacknowledged bytes still in the
kernel, the reply never reached the program, and the tuple is given back to
where it was (:meth:`pastset.core.element.Element.give_back`).  Linux resets a
connection whose process dies with unread data, so a worker killed with its
reply unread shows up as a reset.  TCP_USER_TIMEOUT (from the dead time) makes
a reply to a vanished host fail instead of waiting for ever.

Replies the socket cannot take at once wait in the connection's outbox and are
written when it is writable; a connection's later requests wait until then,
so a client's requests are still answered in order.  The bytes of frames held
in inboxes and outboxes are bounded (``max_inflight``): past it the loop stops
reading from connections with a frame in progress until replies drain.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import itertools
import logging
import mmap
import socket
import struct
import termios
import time
from typing import Any

from pastset.core.waiter import Waiter
from pastset.core.waits import Caller
from pastset.transport.channel import frame_size
from pastset.transport.poller import IN, OUT
from pastset.transport.serving import Pending, Service

__all__ = ["Link", "frame_size", "give_back", "peer", "undelivered"]

log = logging.getLogger("pastset.transport.channel_server")

_RESET = {errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNABORTED, errno.EHOSTUNREACH}
_OUTQ = getattr(termios, "TIOCOUTQ", 0x5411)
_INT = struct.Struct("i")


class Link:
    """The loop's state of one connection; also the hooks its waiters are bound to."""

    __slots__ = (
        "accepted",
        "big",
        "bigfill",
        "busy",
        "caller",
        "dead",
        "early",
        "events",
        "inbox",
        "outbox",
        "outsize",
        "pending",
        "server",
        "service",
        "sock",
        "unconfirmed",
    )

    def __init__(self, sock: socket.socket, server: Any) -> None:
        self.sock = sock
        self.server = server
        self.caller = Caller()
        self.inbox = bytearray()
        self.service: Service | None = None  # set once the handshake passed
        self.accepted = time.monotonic()
        self.big: mmap.mmap | None = None  # a large frame being received into its own buffer
        self.bigfill = 0
        self.busy = False  # the pool works on a request of this connection
        self.pending: Pending | None = None
        self.outbox: collections.deque[memoryview] = collections.deque()
        self.outsize = 0
        self.unconfirmed: tuple[Any, list[int], list[Any]] | None = None
        self.dead = False
        self.early: Waiter | None = None
        self.events = IN

    def notify(self, waiter: Waiter) -> None:
        self.server._post(self._completed, waiter)

    def _completed(self, waiter: Waiter) -> None:
        self.server._completed(self, waiter)

    def alive(self) -> bool:
        if self.dead:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def write(self, pieces: list[bytes | memoryview]) -> None:
        """Send ``pieces`` now as far as the socket takes them; the rest goes to the outbox."""
        server = self.server
        if not self.outbox:
            try:
                sent = self.sock.sendmsg(pieces) if len(pieces) > 1 else self.sock.send(pieces[0])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as err:
                server._ended(self, err.errno)
                return
            for piece in pieces:
                size = len(piece)
                if sent >= size:
                    sent -= size
                    continue
                view = memoryview(piece)[sent:]
                sent = 0
                self.outbox.append(view)
                self.outsize += len(view)
                server._inflight += len(view)
        else:
            for piece in pieces:
                self.outbox.append(memoryview(piece))
                self.outsize += len(piece)
                server._inflight += len(piece)
        if self.outbox and not self.events & OUT:
            self.events |= OUT
            server._poller.modify(self.sock, self.events)

    def flush(self) -> None:
        """Send what the outbox holds, as far as the socket takes it; then the connection's next requests."""
        server = self.server
        outbox = self.outbox
        while outbox:
            batch = list(itertools.islice(outbox, 64))
            try:
                sent = self.sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                server._ended(self, err.errno)
                return
            self.outsize -= sent
            server._inflight -= sent
            while sent and outbox:
                head = outbox[0]
                if sent >= len(head):
                    sent -= len(head)
                    outbox.popleft()
                else:
                    outbox[0] = head[sent:]
                    sent = 0
        self.events &= ~OUT
        server._poller.modify(self.sock, self.events)
        server._work(self)

    def __repr__(self) -> str:
        return f"<channel connection of {self.caller.app or '?'} pid {self.caller.pid} on {self.caller.host or '?'}>"


def undelivered(sock: socket.socket, err: int | None) -> bool:
    """True if what we last sent on ``sock`` cannot have reached the program at the other end."""
    if err in _RESET:
        return True
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        buf = bytearray(_INT.size)
        fcntl.ioctl(sock.fileno(), _OUTQ, buf)
        return _INT.unpack(buf)[0] > 0
    except OSError:
        return err is not None


def give_back(taken: tuple[Any, list[int], list[Any]]) -> None:
    element, indices, values = taken
    try:
        element.give_back(indices, values)
    except Exception:  # pragma: no cover - the element ended meanwhile
        log.debug("could not give back tuples of element %d", element.eid, exc_info=True)


def peer(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
