"""The PastSet server process: the name server, spaces and schedulers.

One Pyro5 daemon hosts the name server and, per run, a space object
(``pastset.space.RUN``, a :class:`pastset.server.service.SpaceService`) and
optionally a scheduler object (``pastset.scheduler.RUN``).  Two runs are two
objects with separate element tables: they never see each other's elements.

Element operations normally take the direct channel
(:mod:`pastset.transport.channel_server`): one event loop for all its
connections, where a blocked operation is a waiter queued on its element and
costs no thread.  Through Pyro5 (the channel off, or TLS on) Pyro5's
thread-pool server gives each connection a thread, whose pool limit is raised
to several thousand so that blocked calls hold up no one else.

Every connection carries a :class:`pastset.core.waits.Caller`, made from the
client's handshake: the channel keeps it with the connection, Pyro5 on its
connection object.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

import Pyro5.api
import Pyro5.errors
import Pyro5.nameserver
from Pyro5 import config as pyro_config

from pastset.core.element import current_caller
from pastset.core.journal import Journal, journal_path
from pastset.core.naming import FACTORY, scheduler_name, space_name
from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.core.waits import Caller
from pastset.errors import ConfigurationError, PastSetError, PastSetValueError
from pastset.server.scheduler_service import SchedulerService
from pastset.server.service import SpaceService
from pastset.settings import Settings
from pastset.transport import tls
from pastset.transport.channel import secret_matches
from pastset.transport.channel_server import ChannelServer
from pastset.transport.pyro_guard import GuardedDaemon
from pastset.transport.redis_admin import StoreAdmin
from pastset.transport.redis_store import parse_store

__all__ = ["SchedulerService", "Server", "SpaceService", "scheduler_name", "space_name"]

log = logging.getLogger(__name__)

THREADS = 5000


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


def _current_task() -> str | None:
    caller = current_caller()
    return getattr(caller, "task", None) or None


def _text(value: Any) -> str:
    return value[:256] if isinstance(value, str) else ""


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
        conn.pastset_caller = Caller(
            task=_text(data.get("task")),
            host=_text(data.get("host")),
            pid=data.get("pid") if isinstance(data.get("pid"), int) else 0,
            app=_text(data.get("app")),
        )
        return "pastset"

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro5 API
        self._server.connection_closed(conn)


def _end_store(admin: StoreAdmin, run: str, keep: bool, reason: str) -> None:
    """End a run's elements in its Redis store (blocked callers get RunEndedError); remove its keys unless ``keep``."""
    try:
        admin.end(reason, keep=keep)
    except Exception as err:
        log.warning("could not end run %s in the Redis store: %s; pypsclean removes its keys", run, err)


class Server:
    """A PastSet server process: name server plus spaces (and schedulers).

    Element operations also have a direct channel (:mod:`pastset.transport.channel`) on a
    port of its own next to the daemon's (``channel``: "auto" for a free port,
    a port number, or "off"), unless Pyro5's TLS is on.
    """

    def __init__(
        self, settings: Settings | None = None, host: str = "127.0.0.1", port: int = 0, on_demand: bool = False
    ) -> None:
        settings = settings if settings is not None else Settings()
        pyro_config.SERVERTYPE = "thread"
        if pyro_config.THREADPOOL_SIZE == 80:  # Pyro5's default: far too small for us
            pyro_config.THREADPOOL_SIZE = THREADS
        pyro_config.THREADPOOL_SIZE_MIN = max(pyro_config.THREADPOOL_SIZE_MIN, 8)
        pyro_config.SOCK_NODELAY = True
        pyro_config.POLLTIMEOUT = 0.5
        self.settings = settings
        self.psbin = settings.psbin
        self.secret = settings.PSSECRET
        self.deadtime = settings.PSDEADTIME
        self.journal_dir = settings.PSJOURNAL
        self.journal_sync = settings.PSJOURNALSYNC
        try:
            self.store = parse_store(settings.PSSTORE)
        except ValueError as err:
            raise ConfigurationError(f"PSSTORE is invalid: {err}") from None
        self.store_keep = settings.PSSTOREKEEP
        self.admins: dict[str, StoreAdmin] = {}
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
        channel = settings.PSCHANNEL
        if channel != "off" and not tls.enabled():
            self.channel = ChannelServer(
                host,
                0 if channel == "auto" else int(channel),
                self.secret,
                self.by_run.get,
                self.caller_gone,
                self.deadtime,
                max_inflight=settings.PSMAXINFLIGHT,
            )
        if on_demand:
            uri = self.daemon.register(FactoryService(self), FACTORY)
            self.daemon.nameserver.register(FACTORY, uri)

    def caller_gone(self, caller: Caller) -> None:
        """A client connection (Pyro5 or channel) ended: hand back its unacknowledged leases."""
        leases, caller.leases = caller.leases, []
        for space, eid, index, data in leases:
            try:
                space.hand_back(eid, index, data)
                log.info("lease on element %d handed back: its observer's connection closed", eid)
            except PastSetError:
                pass  # the element or the run is gone

    def connection_closed(self, conn: Any) -> None:
        """A Pyro5 connection ended: hand back its leases, notice a lost client."""
        caller = getattr(conn, "pastset_caller", None)
        if caller is not None:
            self.caller_gone(caller)
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
            admin = None
            if self.store is not None:
                admin = self.admins[run] = StoreAdmin(self.store, run)
                service.store, service.admin = self.store.redacted(), admin
                space.store_quiet = admin.quiet
                space.store_end = partial(_end_store, admin, run, self.store_keep)
            self.by_run[run] = service
            uri = self.daemon.register(service, space_name(run))
            self.daemon.nameserver.register(space_name(run), uri)
            if sched is not None:
                suri = self.daemon.register(SchedulerService(sched, admin), scheduler_name(run))
                self.daemon.nameserver.register(scheduler_name(run), suri)
                self.schedulers[run] = sched
            self.spaces[run] = space
            log.info("serving run %s%s at %s", run, " with scheduler" if sched else "", self.address)
            return space

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
            for run, admin in list(self.admins.items()):
                try:  # a leased tuple whose observer's connection is gone goes to the next observer
                    admin.hand_back()
                except Exception as err:  # Redis unreachable for a moment (a failover): try again next tick
                    log.warning("cannot check the leases of run %s in the Redis store: %s", run, err)

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
