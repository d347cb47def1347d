"""The server side of the direct channel: one event loop for every connection, no thread per wait.

One thread waits on all connections at once (epoll, or ``selectors``
elsewhere), reads whatever arrived, and starts each complete request
(:meth:`Service.start`).  A request that completes at once is answered at
once.  One that must wait (an observe of an empty element, a move that delta
holds back) becomes a :class:`pastset.core.waiter.Waiter` queued on its
element and bound to its connection: it costs no thread, and the loop keeps
watching the connection while it waits, so a hang-up or a reset cancels the
waiter at once.  When another caller makes the waiter ready, the element
completes it and the loop sends the reply.  Work that may take long — an
X-function's loading, creation and calls, and the decoding of frames over
:data:`LARGE` — runs on a small, bounded pool of threads and never on the loop.

Delivery, and writing replies: see :mod:`pastset.transport.channel_links`, which
holds each connection's state.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import mmap
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from pastset.core.waiter import Waiter
from pastset.core.waits import Caller
from pastset.transport.channel import (
    HANDSHAKE_TIMEOUT,
    HEADER,
    LENGTH,
    Hello,
    encode_welcome,
    frame_views,
    keep_alive_socket,
    parse_frame,
    parse_hello,
    secret_matches,
)
from pastset.transport.channel_links import Link as _Link
from pastset.transport.channel_links import frame_size, give_back, peer, undelivered
from pastset.transport.poller import IN, OUT, Poller
from pastset.transport.serving import Outcome, Pending, Reply, Service

__all__ = ["LARGE", "ChannelServer"]

log = logging.getLogger(__name__)

_READ = 256 * 1024
#: Frames of more bytes than this are decoded on the pool, not on the loop.
LARGE = 1 << 20
#: Threads of the pool that runs X-functions and large frames.
POOL_THREADS = 16
_IN, _OUT = IN, OUT
_Poller = Poller  # the name the loop's tests know


class ChannelServer:
    """Listens for channels next to a Pyro5 daemon and serves them all from one event loop.

    ``services`` maps a run name to its :class:`Service`; ``closed`` is told
    the caller of a connection that ended, so the server can hand back its
    leases.  ``max_inflight`` bounds the bytes of frames held in flight (and
    so the largest request); ``pool_threads`` the threads for slow work.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        services: Callable[[str], Service | None],
        closed: Callable[[Caller], None],
        deadtime: float = 6.0,
        max_inflight: int = 1 << 30,
        pool_threads: int = POOL_THREADS,
    ) -> None:
        self.secret = secret
        self._services = services
        self._closed = closed
        self._deadtime = deadtime
        self.max_inflight = max_inflight
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=4096)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._poller = Poller()
        self._poller.register(self._sock, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller.register(self._wake_r, "wake")
        self._links: dict[socket.socket, _Link] = {}
        self._greeting: set[_Link] = set()  # accepted, handshake not yet received
        self._posted: collections.deque[tuple[Callable[..., None], Any]] = collections.deque()
        self._deadlines: list[tuple[float, int, _Link, Pending]] = []
        self._seq = itertools.count()
        self._inflight = 0  # bytes in inboxes and outboxes
        self._held: set[_Link] = set()  # not read from until the in-flight bytes drain
        self._pool = ThreadPoolExecutor(max_workers=pool_threads, thread_name_prefix="channel-pool")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="channel-loop", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        try:
            while not self._stopping:
                for ready, events in self._poller.poll_events(self._timeout()):
                    if ready is None:
                        self._accept()
                    elif ready == "wake":
                        self._drain_wakeups()
                    else:
                        if events & _OUT and not ready.dead:
                            ready.flush()
                        if events & ~_OUT and not ready.dead:
                            self._readable(ready)
                    if self._posted:
                        self._run_posted()
                if self._posted:
                    self._run_posted()
                if self._deadlines or self._greeting:
                    self._expire()
        except Exception:  # pragma: no cover - a bug: say so, and close what we hold
            log.exception("the channel's event loop failed")
        finally:
            for link in list(self._links.values()):
                self._ended(link, None)
            self._poller.close()
            for sock in (self._sock, self._wake_r, self._wake_w):
                sock.close()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _timeout(self) -> float | None:
        timeout = 1.0 if self._greeting else None
        if self._deadlines:
            left = max(0.0, self._deadlines[0][0] - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def _post(self, action: Callable[..., None], arg: Any) -> None:
        """Run ``action(arg)`` on the loop (from any thread; never blocks)."""
        self._posted.append((action, arg))
        if threading.current_thread() is not self._thread:
            try:
                self._wake_w.send(b"!")
            except OSError:
                pass  # the wake-up pipe is full (the loop will drain it) or closed (stopping)

    def _run_posted(self) -> None:
        posted = self._posted
        while posted:
            action, arg = posted.popleft()
            action(arg)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self) -> None:
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
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
                if user_timeout is not None:  # unacknowledged data to a vanished host fails within the dead time
                    sock.setsockopt(socket.IPPROTO_TCP, user_timeout, max(1000, int(self._deadtime * 1000)))
                sock.setblocking(False)
            except OSError:
                sock.close()
                continue
            link = _Link(sock, self)
            self._links[sock] = link
            self._greeting.add(link)
            self._poller.register(sock, link)

    def _readable(self, link: _Link) -> None:
        if link.big is not None:
            self._read_big(link)
            return
        try:
            data = link.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.debug("%r ended: %s", link, err)
            self._ended(link, err.errno)
            return
        if not data:
            self._ended(link, None)
            return
        link.unconfirmed = None  # it sent more: it has read our last reply
        link.inbox += data
        self._inflight += len(data)
        self._work(link)
        if self._inflight > self.max_inflight and link.inbox and not link.dead:
            self._hold(link)

    def _work(self, link: _Link) -> None:
        """Start every complete request in the connection's inbox, until one waits or goes to the pool."""
        while not link.dead and link.pending is None and not link.busy and not link.outbox and link.big is None:
            before = len(link.inbox)
            if link.service is None:
                try:
                    hello = parse_hello(link.inbox)
                except ConnectionError as err:
                    log.info("closed a channel from %s: %s", peer(link.sock), err)
                    self._ended(link, None)
                    return
                if hello is None:
                    return
                self._inflight -= before - len(link.inbox)
                self._handshake(link, hello)
                continue
            try:
                frame = parse_frame(link.inbox, self.max_inflight)
            except ConnectionError as err:
                log.info("closed a channel from %s: %s", peer(link.sock), err)
                self._ended(link, None)
                return
            if frame is None:
                total = frame_size(link.inbox)
                if total is not None and total > LARGE:
                    self._begin_big(link, total)  # the rest goes straight into a buffer of its own
                return
            self._inflight -= before - len(link.inbox)
            body, buffers = frame
            size = len(body) + sum(len(b) for b in buffers)
            if size > LARGE:
                self._off_loop(link, partial(self._start, link, body, buffers))
                return
            self._outcome(link, self._start(link, body, buffers))
        self._release()

    def _begin_big(self, link: _Link, total: int) -> None:
        """Receive a large frame into a buffer of its own size (no growing and copying of the inbox).

        An anonymous mapping, not a bytearray: the kernel hands out zeroed pages
        as ``recv_into`` fills them, where ``bytearray(total)`` would first clear
        every byte on the loop, with the interpreter lock held.
        """
        big = mmap.mmap(-1, total)
        have = min(total, len(link.inbox))
        big[:have] = link.inbox[:have]
        del link.inbox[:have]
        self._inflight += total - have
        link.big, link.bigfill = big, have
        if have == total:
            self._big_done(link)

    def _read_big(self, link: _Link) -> None:
        assert link.big is not None
        try:
            got = link.sock.recv_into(memoryview(link.big)[link.bigfill :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._ended(link, err.errno)
            return
        if not got:
            self._ended(link, None)
            return
        link.unconfirmed = None
        link.bigfill += got
        if link.bigfill == len(link.big):
            self._big_done(link)

    def _big_done(self, link: _Link) -> None:
        big, link.big = link.big, None
        assert big is not None
        self._inflight -= len(big)

        def work() -> Outcome:
            return self._start(link, *frame_views(big))

        self._off_loop(link, work)

    def _start(self, link: _Link, body: bytes, buffers: list[bytearray | memoryview]) -> Outcome:
        assert link.service is not None
        return link.service.start(link.caller, body, buffers, link)

    def _outcome(self, link: _Link, outcome: Outcome) -> None:
        if isinstance(outcome, Reply):
            self._send(link, outcome)
        elif isinstance(outcome, Pending):
            link.pending = outcome
            if link.early is outcome.waiter:  # it completed on another thread before we knew it queued
                link.early = None
                self._completed(link, outcome.waiter)
                return
            if outcome.until is not None:
                heapq.heappush(self._deadlines, (outcome.until, next(self._seq), link, outcome))
        else:
            self._off_loop(link, outcome)

    def _off_loop(self, link: _Link, work: Callable[[], Outcome]) -> None:
        """Run ``work`` on the pool; its outcome comes back to the loop."""
        link.busy = True

        def run() -> None:
            try:
                outcome = work()
                while callable(outcome) and not isinstance(outcome, (Reply, Pending)):
                    outcome = outcome()  # already on the pool: run it here
            except Exception:  # pragma: no cover - a bug in a request: the connection cannot go on
                log.exception("error while serving a channel request")
                outcome = None
            self._post(self._back, (link, outcome))

        self._pool.submit(run)

    def _back(self, item: tuple[_Link, Outcome | None]) -> None:
        link, outcome = item
        link.busy = False
        if outcome is None:
            self._ended(link, None)
            return
        if link.dead:
            if isinstance(outcome, Reply) and outcome.taken is not None:
                give_back(outcome.taken)
            elif isinstance(outcome, Pending):
                self._abandon(outcome)
            return
        self._outcome(link, outcome)
        self._work(link)

    def _completed(self, link: _Link, waiter: Waiter) -> None:
        """A queued waiter of ``link`` completed: send its reply (or give back what it took)."""
        pending = link.pending
        if pending is None or pending.waiter is not waiter:
            if link.busy:
                link.early = waiter  # queued from the pool, whose outcome is yet to come back
            return  # else handled already (its connection ended, or it timed out)
        link.pending = None
        if link.dead:
            self._abandon(pending)
            return
        assert link.service is not None
        self._outcome(link, link.service.finish(pending, link.caller))
        self._work(link)

    def _abandon(self, pending: Pending) -> None:
        """The connection of ``pending`` is gone: cancel it, or give back what it took."""
        waiter = pending.waiter
        if not pending.element.cancel(waiter) and waiter.done and waiter.error is None and waiter.taken:
            values = waiter.result if waiter.op == "observe_many" else [waiter.result]
            pending.element.give_back(waiter.taken, values)
            log.info("%d tuple(s) of element %d given back: the observer left", len(values), pending.element.eid)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, link, pending = heapq.heappop(self._deadlines)
            if link.pending is not pending or link.dead:
                continue
            if pending.element.cancel(pending.waiter):
                link.pending = None
                assert link.service is not None
                self._send(link, link.service.timed_out(pending))
                self._work(link)
        if self._greeting:
            for link in [link for link in self._greeting if now - link.accepted > HANDSHAKE_TIMEOUT]:
                log.info("closed a channel from %s: no handshake within %g s", peer(link.sock), HANDSHAKE_TIMEOUT)
                self._ended(link, None)

    def _handshake(self, link: _Link, hello: Hello) -> None:
        self._greeting.discard(link)
        if not secret_matches(self.secret, hello.secret):
            log.warning("refused a channel without the run's secret from %s", peer(link.sock))
            self._refuse(link, "this PastSet run needs its secret")
            return
        service = self._services(hello.run)
        if service is None:
            self._refuse(link, f"no PastSet named {hello.run!r} on this server")
            return
        link.caller = Caller(task=hello.task, host=hello.host, pid=hello.pid, app=hello.app)
        link.service = service
        link.write([encode_welcome(0, self.max_inflight, "pastset")])

    def _refuse(self, link: _Link, message: str) -> None:
        try:
            link.sock.send(encode_welcome(1, 0, message))
        except OSError:
            pass
        self._ended(link, None)

    # --------------------------------------------------------------- replies
    def _send(self, link: _Link, reply: Reply) -> None:
        parts = reply.parts
        body = parts[0]
        if len(parts) == 1:
            head = HEADER.pack(len(body), 0)
        else:
            head = HEADER.pack(len(body), len(parts) - 1) + b"".join(LENGTH.pack(len(p)) for p in parts[1:])
        if reply.taken is not None:
            link.unconfirmed = reply.taken
        if len(parts) == 1 and len(body) < 65536:
            link.write([head + body])
        else:
            link.write([head, *parts])

    # ----------------------------------------------------- back-pressure
    def _hold(self, link: _Link) -> None:
        """Stop reading ``link`` until the bytes in flight drain (hang-ups are still seen)."""
        if link in self._held:
            return
        self._held.add(link)
        link.events &= ~_IN
        self._poller.modify(link.sock, link.events)

    def _release(self) -> None:
        if self._held and self._inflight <= self.max_inflight:
            for link in list(self._held):
                self._held.discard(link)
                if not link.dead:
                    link.events |= _IN
                    self._poller.modify(link.sock, link.events)

    # ---------------------------------------------------------------- ending
    def _ended(self, link: _Link, err: int | None) -> None:
        """The connection ended (``err``: the errno it ended with): cancel its waiter, give back what never arrived."""
        if link.dead:
            return
        link.dead = True
        if link.unconfirmed is not None and not self._stopping and (link.outbox or undelivered(link.sock, err)):
            give_back(link.unconfirmed)
            log.info("a reply to %r never arrived: its tuple went back to element %d", link, link.unconfirmed[0].eid)
        link.unconfirmed = None
        if link.pending is not None:
            pending, link.pending = link.pending, None
            self._abandon(pending)
        self._inflight -= len(link.inbox) + link.outsize + (len(link.big) if link.big is not None else 0)
        link.big = None
        link.inbox = bytearray()
        link.outbox.clear()
        link.outsize = 0
        self._held.discard(link)
        self._links.pop(link.sock, None)
        self._greeting.discard(link)
        try:
            self._poller.unregister(link.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            link.sock.close()
        except OSError:  # pragma: no cover
            pass
        if link.service is not None:
            self._closed(link.caller)
        self._release()

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop accepting and end every open channel."""
        self._stopping = True
        try:
            self._wake_w.send(b"!")
        except OSError:
            pass
        self._thread.join(5)

    def waiting(self) -> int:
        """Connections with a request queued on an element (for tests and views)."""
        return sum(1 for link in list(self._links.values()) if link.pending is not None)
