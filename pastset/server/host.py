"""The PastSet server: spaces and schedulers as Pyro5 objects.

One Pyro5 daemon hosts the name server and, per run, a space object
(``pastset.space.RUN``) and optionally a scheduler object
(``pastset.scheduler.RUN``).  Two runs are two objects with separate element
tables: they never see each other's elements.

Server model.  We use Pyro5's thread-pool server with one thread per client
connection and raise its pool limit (80 by default, after which Pyro refuses
connections) to several thousand.  PastSet operations block by design — an
``observe`` may wait for minutes — and a blocked call must hold up no one else.
A thread per connection maps a blocked call onto a blocked thread that costs a
stack and nothing else (the GIL is released while waiting on a condition), while
the multiplexing server would serve every connection from one thread and let a
single blocked observe stop the whole run.  Stacks are set to 1 MiB so that
thousands of threads stay cheap in address space as well.

Messages are opaque bytes encoded by :mod:`pastset.wire`; Pyro5 carries them with
its msgpack serializer.  Nothing received is ever unpickled.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import Pyro5.api
import Pyro5.callcontext
import Pyro5.core
import Pyro5.errors
import Pyro5.nameserver
from Pyro5 import config as pyro_config

from pastset import wire
from pastset.core.element import Element, deadline
from pastset.core.journal import Journal, journal_path
from pastset.core.naming import FACTORY, scheduler_name, space_name
from pastset.core.scheduler import Scheduler
from pastset.core.space import Space, describe
from pastset.errors import (
    ConfigurationError,
    PastSetError,
    PastSetTypeError,
    PastSetValueError,
    RemoteError,
    XFunctionError,
)
from pastset.transport import tls
from pastset.transport.channel import secret_matches
from pastset.transport.channel_server import ChannelServer, Serve
from pastset.transport.pyro_guard import GuardedDaemon

__all__ = ["SchedulerService", "Server", "SpaceService", "scheduler_name", "space_name"]

log = logging.getLogger(__name__)

THREADS = 5000


def _connection() -> Any:
    return getattr(Pyro5.callcontext.current_context, "client", None)


def _current_task() -> str | None:
    return getattr(_connection(), "pastset_task", None) or None


def _error_reply(err: BaseException) -> tuple[int, str, str, str | None]:
    if isinstance(err, PastSetError):
        return 1, type(err).__name__, str(err), err.remote_traceback
    return 1, RemoteError.__name__, str(err), "".join(traceback.format_exception(err))


def _encoded(reply: tuple, encode: Callable[[Any], Any]) -> Any:
    """``encode(reply)``, or an error reply if the result cannot cross the wire (an X-function's odd value)."""
    try:
        return encode(reply)
    except wire.SerialisationError as err:
        return encode(_error_reply(err))


def _may_wait_move(eid: int, data: Any = None, timeout: Any = None) -> tuple[int, int, int]:
    return eid, 1, -1


def _may_wait_move_many(eid: int, tuples: Any = (), timeout: Any = None) -> tuple[int, int, int]:
    return eid, max(1, len(tuples)), -1


def _may_wait_observe(eid: int, index: Any = -1, timeout: Any = None) -> tuple[int, int, int]:
    return eid, 0, index if isinstance(index, int) else -1


def _may_wait_observe_many(eid: int, count: Any = 1, timeout: Any = None) -> tuple[int, int, int]:
    return eid, 0, -1


def _may_wait_ack(eid: int, result_eid: Any = None, result: Any = None, timeout: Any = None) -> tuple[int, int, int]:
    if result_eid is None:
        raise LookupError("an ack without a result never waits")
    return result_eid, 1, -1


#: For each operation that can block: (element, tuples moved, index observed) from its arguments.
_MAY_WAIT: dict[str, Callable[..., tuple[int, int, int]]] = {
    "move": _may_wait_move,
    "move_many": _may_wait_move_many,
    "observe": _may_wait_observe,
    "observe_many": _may_wait_observe_many,
    "ack": _may_wait_ack,
}
_WAITS = object()


class _Held:
    """An already acquired lock, released when the ``with`` block ends."""

    __slots__ = ("_lock",)

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class _Gauge:
    """Counts calls in progress, so a stopping server can let their replies go out.

    Every request passes through it twice, so the count is kept under a plain
    lock; the condition on that lock is used only while someone waits for idle.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._count = 0
        self._waiters = 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1
            if not self._count and self._waiters:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no call is in progress (or ``timeout``); True if idle."""
        with self._idle:
            self._waiters += 1
            try:
                return self._idle.wait_for(lambda: self._count == 0, timeout)
            finally:
                self._waiters -= 1


@Pyro5.api.expose
class SpaceService:
    """The Pyro5 face of one :class:`~pastset.core.space.Space`: a single ``call`` entry.

    A request is ``encode((op, *args))``; a reply is ``encode((0, result))`` or
    ``encode((1, error_class_name, message, remote_traceback))``.
    """

    def __init__(self, space: Space, scheduler: Scheduler | None = None) -> None:
        self.space = space
        self.scheduler = scheduler
        self.calls = _Gauge()
        #: Port of the server's direct channel (pastset.transport.channel), None when it is off.
        self.channel_port: int | None = None
        self._ops: dict[str, Callable[..., Any]] = {
            "enter": self._enter,
            "move": self._move,
            "observe": self._observe,
            "first": lambda eid: self._apply(eid, "first"),
            "last": lambda eid: self._apply(eid, "last"),
            "template": lambda eid: self._apply(eid, "template"),
            "delta": lambda eid, value=None: self._apply(eid, "delta", value),
            "axe": lambda eid, index: self._apply(eid, "axe", index),
            "delelement": self.space.delelement,
            "ack": self._ack,
            "move_many": self._move_many,
            "observe_many": self._observe_many,
            "spawn": self._spawn,
            "halt": self._halt,
            "ping": lambda: self.space.name,
            "channel": lambda: self.channel_port,
        }

    def call(self, request: bytes) -> bytes:
        """Run one encoded operation and return the encoded reply (the Pyro5 entry)."""
        with self.calls:
            return _encoded(self._call(request, None), wire.encode)

    def call_parts(self, body: bytes, buffers: list[bytearray]) -> list[bytes | memoryview]:
        """The same with large arrays out of band: the reply as [body, buffer, ...]."""
        with self.calls:
            return _encoded(self._call(body, buffers), wire.encode_parts)

    def try_parts(self, body: bytes, buffers: list[bytearray]) -> list[bytes | memoryview] | Callable[[], Any]:
        """Run a request only if it completes without waiting (the direct channel's event loop).

        Returns the reply's parts, or, for an operation that would block now (or
        whose X-function might), a function that runs it to the end, to be called
        in a thread of its own.  Checking and running happen under the element's
        lock, so nothing run here ever waits.
        """
        with self.calls:
            try:
                message = self._parse(body, buffers)
            except PastSetError as err:
                return wire.encode_parts(_error_reply(err))
            gate = self._gate(message)
            if gate is _WAITS:
                return partial(self._finish, message)
            if gate is None:
                return _encoded(self._run(message), wire.encode_parts)
            with gate:  # the element's lock: would_wait said no, and nobody can change that now
                return _encoded(self._run(message), wire.encode_parts)

    def _finish(self, message: tuple) -> list[bytes | memoryview]:
        with self.calls:
            return _encoded(self._run(message), wire.encode_parts)

    def _gate(self, message: tuple) -> Any:
        """None if ``message`` never waits; _WAITS if it may; else the lock under which it will not."""
        wait = _MAY_WAIT.get(message[0])
        if wait is None:
            return None
        try:
            target, moves, index = wait(*message[1:])
            element = self.space.element(target)
        except Exception:
            return None  # a malformed request or a gone element: it fails at once, without waiting
        if type(element) is not Element:
            return _WAITS  # an X-function may wait inside its override: give it a thread
        lock = element.lock
        lock.acquire()
        try:
            waits = element.would_wait(moves, index)
        except BaseException:
            lock.release()
            raise
        if waits:
            lock.release()
            return _WAITS
        return _Held(lock)

    def _call(self, request: bytes, buffers: list[bytearray] | None) -> tuple:
        try:
            message = self._parse(request, buffers)
        except PastSetError as err:
            return _error_reply(err)
        return self._run(message)

    def _parse(self, request: bytes, buffers: list[bytearray] | None) -> tuple:
        if not isinstance(request, bytes):
            raise wire.SerialisationError(
                "requests must be bytes sent with Pyro5's msgpack serializer; use pastset.PastSet"
            )
        message = wire.decode(request) if buffers is None else wire.decode_parts(request, buffers)
        if not isinstance(message, tuple) or not message or message[0] not in self._ops:
            raise wire.SerialisationError(f"unknown request {message!r:.80}")
        return message

    def _run(self, message: tuple) -> tuple:
        try:
            return 0, self._ops[message[0]](*message[1:])
        except PastSetError as err:
            return _error_reply(err)
        except TypeError as err:  # wrong arity from a mismatched client
            return _error_reply(RemoteError(f"malformed request: {err}"))
        except Exception as err:  # a bug: report it with its traceback, keep serving
            log.exception("error while serving a request")
            return _error_reply(err)

    # ----------------------------------------------------------------- ops
    def _enter(self, template: tuple, xfunction: str | None = None, leases: bool = False) -> tuple[int, tuple, bool]:
        eid = self.space.enter(template, xfunction, bool(leases))
        return eid, self.space.element(eid).template(), eid in self.space.leased

    def _move(self, eid: int, data: Any, timeout: float | None = None) -> None:
        self._apply(eid, "move", data, timeout=timeout)
        self.space.moves += 1

    def _observe(self, eid: int, index: int = -1, timeout: float | None = None) -> Any:
        element = self.space.element(eid)
        if type(element) is not Element and isinstance(index, int) and index < 0:
            data = self._x_observe(eid, element, index, timeout)
        else:
            data = self._apply(eid, "observe", index, timeout=timeout)
        self.space.observes += 1
        if index < 0 and eid in self.space.leased:
            conn = _connection()
            if conn is not None:  # held until acknowledged; handed back if the connection dies
                leases = getattr(conn, "pastset_leases", None)
                if leases is None:
                    leases = conn.pastset_leases = []
                leases.append((self.space, eid, data))
        return data

    def _x_observe(self, eid: int, element: Element, index: int, timeout: float | None) -> Any:
        """An X-function's unindexed observe whose value must be sendable, or its tuple goes back."""
        with element.lock:
            before = Element.first(element)
            data = self._apply(eid, "observe", index, timeout=timeout)
            try:
                wire.encode(data)
            except wire.SerialisationError as err:
                after = Element.first(element)
                kept = after > before and Element.unobserve(element, after - 1)
                raise XFunctionError(
                    f"X-function {self.space.xfunction_of(eid)!r} returned a value that cannot be sent: {err}"
                    + ("; the tuple stays in the element" if kept else "")
                ) from None
        return data

    def _move_many(self, eid: int, tuples: list[Any], timeout: float | None = None) -> None:
        if not isinstance(tuples, (list, tuple)):
            raise PastSetTypeError(f"move_many takes a list of tuples, got {type(tuples).__name__}")
        element = self.space.element(eid)
        if type(element) is Element:
            with deadline(timeout):
                element.move_many(list(tuples))
        else:
            with element.lock:  # an X-function sees each tuple, in order
                for data in tuples:
                    self._apply(eid, "move", data, timeout=timeout)
        self.space.moves += len(tuples)

    def _observe_many(self, eid: int, count: int, timeout: float | None = None) -> list[Any]:
        element = self.space.element(eid)
        if type(element) is Element:
            with deadline(timeout):
                taken = element.observe_many(count)
        else:
            with element.lock:  # an X-function filters each tuple
                taken = [self._apply(eid, "observe", -1, timeout=timeout)]
                while len(taken) < count and element.first() < element.last():
                    taken.append(self._apply(eid, "observe", -1))
        self.space.observes += len(taken)
        if eid in self.space.leased:
            conn = _connection()
            if conn is not None:
                leases = getattr(conn, "pastset_leases", None)
                if leases is None:
                    leases = conn.pastset_leases = []
                leases.extend((self.space, eid, data) for data in taken)
        return taken

    def _ack(self, eid: int, result_eid: int | None = None, result: Any = None, timeout: float | None = None) -> None:
        """Acknowledge the oldest leased tuple of ``eid`` on this connection.

        With ``result_eid`` the result tuple is moved first, in the same request,
        so a result and its acknowledgement happen together or not at all.
        """
        leases = getattr(_connection(), "pastset_leases", None) or []
        position = next((i for i, (s, e, _) in enumerate(leases) if s is self.space and e == eid), None)
        if position is None:
            raise PastSetValueError(
                "nothing to acknowledge: this thread holds no unacknowledged tuple of that element "
                "(ack follows an unindexed observe of an element entered with leases=True)"
            )
        if result_eid is not None:
            self._move(result_eid, result, timeout)
        del leases[position]

    def _apply(self, eid: int, name: str, *args: Any, timeout: float | None = None) -> Any:
        element = self.space.element(eid)
        method = getattr(element, name)
        if type(element) is Element:
            with deadline(timeout):
                return method(*args)
        # An X-function: run it atomically on its element, and name it in errors.
        try:
            with deadline(timeout), element.lock:
                return method(*args)
        except PastSetError:
            raise
        except Exception as err:
            xname = self.space.xfunction_of(eid)
            wrapped = XFunctionError(f"X-function {xname!r} raised {type(err).__name__}: {err}")
            wrapped.remote_traceback = "".join(traceback.format_exception(err))
            raise wrapped from err

    def _spawn(self, app: str, args: Any = None) -> str:
        return self._need_scheduler().spawn(app, args)

    def _halt(self) -> None:
        self._need_scheduler().halt()

    def _need_scheduler(self) -> Scheduler:
        if self.scheduler is None:
            raise ConfigurationError(
                f"the PastSet {self.space.name!r} has no scheduler, so spawn/halt are not available; "
                "start the run with pypsrun (or pypsscheduler) to run tasks on clients"
            )
        return self.scheduler


@Pyro5.api.expose
class SchedulerService:
    """The Pyro5 face of a :class:`~pastset.core.scheduler.Scheduler` (plain msgpack data)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def register(self, specs: dict[str, Any]) -> str:
        """Register a client; the connection is remembered so a lost client is noticed."""
        cid = self.scheduler.register(specs)
        conn = _connection()
        if conn is not None:
            conn.pastset_client = cid
        return cid

    def next_task(self, cid: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The next task for client ``cid`` (None: stop); see Scheduler.next_task."""
        return self.scheduler.next_task(cid, timeout)

    def task_done(self, cid: str, tid: str, status: int, stderr_tail: str = "") -> None:
        """Record the end of a task."""
        self.scheduler.task_done(cid, tid, status, stderr_tail)

    def node_gone(self, node: str, reason: str) -> list[str]:
        """Give up on the clients on host ``node`` as on a dead host; return their ids."""
        return self.scheduler.node_gone(node, reason)

    def wait_clients(self, count: int, timeout: float | None = None) -> int:
        """Block until ``count`` clients registered or ``timeout``; return the count."""
        return self.scheduler.wait_clients(count, timeout)

    def finish(self, wait: bool = True, timeout: float | None = None) -> bool:
        """End the run (after it went quiet if ``wait``)."""
        return self.scheduler.finish(wait, timeout)

    def halt(self) -> None:
        """No more tasks."""
        self.scheduler.halt()

    def heartbeat(self, cid: str) -> bool:
        """A client is alive; False means the run gave up on it (it should stop)."""
        return self.scheduler.heartbeat(cid)

    def pause(self, match: str = "") -> list[int]:
        """Hold dispatch and unindexed observes (all, or elements matching ``match``)."""
        return self.scheduler.pause(match)

    def resume(self, match: str = "") -> list[int]:
        """Release what pause held."""
        return self.scheduler.resume(match)

    def stop(self, reason: str = "") -> None:
        """End the run now (an operator's stop)."""
        self.scheduler.stop(reason or "the run was stopped by pypsmanage")

    def wait_end(self, timeout: float | None = None) -> str | None:
        """Block until the run ends; the stop reason, "" if it simply ended, None on timeout."""
        return self.scheduler.wait_end(timeout)

    def snapshot(self) -> dict[str, Any]:
        """Clients, tasks and elements of the run."""
        data = self.scheduler.snapshot()
        data["elements"] = describe(self.scheduler.space)
        data["run"] = self.scheduler.space.name
        return data


@Pyro5.api.expose
class FactoryService:
    """Opens named spaces on demand on a long-lived server (``pypsserver``)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def open(self, run: str) -> str:
        """Host the space called ``run`` if not yet there; return its URI."""
        if not isinstance(run, str) or not run or not run.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise PastSetValueError(f"a PastSet name is letters, digits, '-', '_' and '.', got {run!r}")
        self.server.open(run)
        return str(self.server.daemon.uriFor(space_name(run)))


class _Daemon(GuardedDaemon, Pyro5.nameserver.NameServerDaemon):
    """Name server daemon that also learns who connects and who leaves (its port guarded: pyro_guard)."""

    def __init__(self, server: Server, host: str, port: int) -> None:
        self._server = server
        super().__init__(host=host, port=port)

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802 - Pyro5 API
        data = data if isinstance(data, dict) else {}
        if not secret_matches(self._server.secret, data.get("secret")):
            log.warning("refused a connection without the run's secret from %s", getattr(conn, "sock", conn))
            raise Pyro5.errors.SecurityError("this PastSet run needs its secret")
        task = data.get("task")
        if isinstance(task, str) and task:
            conn.pastset_task = task
        return "pastset"

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro5 API
        self._server.connection_closed(conn)


class Server:
    """A PastSet server process: name server plus spaces (and schedulers).

    Element operations also have a direct channel (:mod:`pastset.transport.channel`) on a
    port of its own next to the daemon's (``channel``: "auto" for a free port,
    a port number, or "off"), unless Pyro5's TLS is on.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        psbin: list[str] | None = None,
        on_demand: bool = False,
        secret: str = "",
        deadtime: float = 6.0,
        journal_dir: str = "",
        journal_sync: bool = False,
        channel: str = "auto",
    ) -> None:
        pyro_config.SERVERTYPE = "thread"
        if pyro_config.THREADPOOL_SIZE == 80:  # Pyro5's default: far too small for us
            pyro_config.THREADPOOL_SIZE = THREADS
        pyro_config.THREADPOOL_SIZE_MIN = max(pyro_config.THREADPOOL_SIZE_MIN, 8)
        pyro_config.SOCK_NODELAY = True
        pyro_config.POLLTIMEOUT = 0.5
        self.psbin = psbin or ["."]
        self.secret = secret
        self.deadtime = deadtime
        self.journal_dir = journal_dir
        self.journal_sync = journal_sync
        self.spaces: dict[str, Space] = {}
        self.schedulers: dict[str, Scheduler] = {}
        self.by_run: dict[str, SpaceService] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_requested = False  # set by request_stop, from a signal handler
        tls.check_server()  # a clear error for bad PYRO_SSL_* settings, before anything listens
        self.daemon = _Daemon(self, host, port)
        sockname = self.daemon.sock.getsockname()
        self.host = host
        self.port = int(sockname[1])
        self.channel: ChannelServer | None = None
        if channel != "off" and not tls.enabled():
            port_ = 0 if channel == "auto" else int(channel)
            self.channel = ChannelServer(host, port_, secret, self._space_call, self.connection_closed, deadtime)
        if on_demand:
            uri = self.daemon.register(FactoryService(self), FACTORY)
            self.daemon.nameserver.register(FACTORY, uri)

    def connection_closed(self, conn: Any) -> None:
        """A client connection (Pyro5 or channel) ended: hand back its leases, notice a lost client."""
        for space, eid, data in getattr(conn, "pastset_leases", None) or []:
            try:
                space.element(eid).requeue(data)
                log.info("lease on element %d handed back: its observer's connection closed", eid)
            except PastSetError:
                pass  # the element or the run is gone
        cid = getattr(conn, "pastset_client", None)
        if cid:
            for scheduler in self.schedulers.values():
                scheduler.client_gone(cid, "client connection lost")

    @property
    def address(self) -> str:
        """Where clients find this server's name server: HOST:PORT."""
        return f"{self.host}:{self.port}"

    def open(self, run: str, scheduler: bool = False) -> Space:
        """Host the space of ``run`` (and a scheduler if asked); idempotent."""
        with self._lock:
            space = self.spaces.get(run)
            if space is not None:
                return space
            journal = None
            if self.journal_dir:
                journal = Journal(journal_path(self.journal_dir, run), self.journal_sync)
            space = Space(run, self.psbin, _current_task, journal)
            sched = Scheduler(space, deadtime=self.deadtime) if scheduler else None
            service = SpaceService(space, sched)
            service.channel_port = self.channel.port if self.channel is not None else None
            self.by_run[run] = service
            uri = self.daemon.register(service, space_name(run))
            self.daemon.nameserver.register(space_name(run), uri)
            if sched is not None:
                suri = self.daemon.register(SchedulerService(sched), scheduler_name(run))
                self.daemon.nameserver.register(scheduler_name(run), suri)
                self.schedulers[run] = sched
            self.spaces[run] = space
            log.info("serving run %s%s at %s", run, " with scheduler" if sched else "", self.address)
            return space

    def _space_call(self, run: str) -> Serve | None:
        service = self.by_run.get(run)
        return service.try_parts if service is not None else None

    def serve(self) -> None:
        """Serve requests in this thread until :meth:`stop` (or :meth:`request_stop`)."""
        threading.Thread(target=self._watch_clients, name="heartbeats", daemon=True).start()
        self.daemon.requestLoop(loopCondition=lambda: not self._stop.is_set() and not self._stop_requested)
        if self._stop_requested:
            self.stop()

    def request_stop(self) -> None:
        """Make :meth:`serve` stop: safe in a signal handler, as it takes no lock (serve then calls stop)."""
        self._stop_requested = True
        try:
            self.daemon.transportServer.wakeup()
        except OSError:  # pragma: no cover - socket already gone
            pass

    def _watch_clients(self) -> None:
        # A bounded tick: a client whose host vanished sends nothing that could wake us.
        tick = min(0.5, self.deadtime / 4)
        while not self._stop.wait(tick):
            for scheduler in list(self.schedulers.values()):
                scheduler.check_clients()

    def stop(self) -> None:
        """Stop serving: end every run so blocked callers are told, then leave the loop."""
        for space in list(self.spaces.values()):
            space.end("the PastSet server is shutting down")
        for scheduler in list(self.schedulers.values()):
            scheduler.end()
        self._stop.set()
        try:
            self.daemon.transportServer.wakeup()
        except OSError:  # pragma: no cover - socket already gone
            pass

    def close(self, grace: float = 2.0) -> None:
        """Let replies to ended calls go out (bounded), then close the listening socket.

        Worker threads are daemons and end with the process.
        """
        until = time.monotonic() + grace
        for service in list(self.by_run.values()):
            service.calls.wait_idle(max(0.0, until - time.monotonic()))
        if self.channel is not None:
            self.channel.close()
        try:
            self.daemon.sock.close()
        except OSError:  # pragma: no cover
            pass
