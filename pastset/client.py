"""The client API: ``pastset.PastSet()`` and the element handles it returns.

A :class:`PastSet` finds the run's space through the run's Pyro5 name server
(PSNS, PSRUN, set by pypsrun) and talks to it with one request per operation,
over the server's direct channel (:mod:`pastset.transport.channel`) when it offers one,
else through Pyro5.  Each thread gets its own connection, so a thread blocked
in ``observe`` never holds up another thread of the same program: a handle and
its elements are safe to share between threads.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

import Pyro5.core
import Pyro5.errors

from pastset.core.checks import check_delta, check_index, check_template, check_timeout
from pastset.core.naming import FACTORY, space_name
from pastset.core.waits import show_template
from pastset.errors import (
    BY_NAME,
    ConfigurationError,
    Interrupted,
    PastSetConnectionError,
    PastSetTypeError,
    PastSetValueError,
    RemoteError,
    SerialisationError,
)
from pastset.psbin import check_spawn_target
from pastset.settings import Settings, Wiring
from pastset.tracebacks import install_interrupt_hook
from pastset.transport import tls
from pastset.transport.link import Link, LinkSpec, open_link
from pastset.transport.ops import OPERATIONS
from pastset.transport.proxies import connection_error, proxy, refused

__all__ = ["ElementHandle", "PastSet"]

log = logging.getLogger(__name__)


def _raise_reply(reply: tuple) -> None:
    _, name, message, remote = reply
    cls = BY_NAME.get(name, RemoteError)
    err = cls(message)
    err.remote_traceback = remote
    raise err


class PastSet:
    """A connection to the PastSet of a run.

    With no arguments it joins the run this program was started in (by pypsrun,
    or as a spawned task); ``run`` and ``ns`` ("HOST:PORT") name another one.
    Raises PastSetConnectionError, saying where it looked, if none is reachable.
    """

    def __init__(self, run: str | None = None, ns: str | None = None, secret: str | None = None) -> None:
        settings = Settings.load(run_helper=False)
        wiring = Wiring.of(settings)
        wiring = replace(wiring, ns=wiring.ns if ns is None else ns, secret=wiring.secret if secret is None else secret)
        host, port = wiring.ns_address()
        self._run = run or wiring.run or "default"
        self._task = wiring.task
        self._secret = wiring.secret
        self._strict = settings.PSSTRICT
        #: element id -> template, to name the element in an interrupt's message
        self._templates: dict[int, tuple] = {}
        install_interrupt_hook(Interrupted)
        self._deadtime = settings.PSDEADTIME
        self._where = f"name server {host}:{port} (PSNS), run {self._run!r} (PSRUN)"
        self._local = threading.local()
        self._links: list[Link] = []
        self._plock = threading.Lock()
        self._uri = self._resolve(host, port)
        self._spec = LinkSpec(self._uri, self._run, self._secret, self._task, self._deadtime, self._where)
        port_ = self._call("channel")
        store = self._call("store")
        if isinstance(port_, int):
            self.close()  # the Pyro5 connection that asked; from now on calls take the channel
            self._spec.channel = (Pyro5.core.URI(self._uri).host, port_)
        if store is not None:  # elements live in Redis: open_link sends element operations there
            self.close()
            self._spec.store = _open_store(store, settings.PSSTORE, self._run, self._task)

    @property
    def _channel(self) -> tuple[str, int] | None:
        """The direct channel's (host, port) this handle uses, None when its calls go through Pyro5."""
        return self._spec.channel

    def _resolve(self, host: str, port: int) -> str:
        try:
            with proxy(f"PYRO:{Pyro5.core.NAMESERVER_NAME}@{host}:{port}", self._secret, timeout=10) as ns:
                try:
                    return str(ns.lookup(space_name(self._run)))
                except Pyro5.errors.NamingError:
                    pass
                try:
                    factory = ns.lookup(FACTORY)
                except Pyro5.errors.NamingError:
                    raise PastSetConnectionError(
                        f"no PastSet named {self._run!r} at {self._where}; check PSRUN, or that the run has not ended"
                    ) from None
            with proxy(factory, self._secret, timeout=10) as opener:
                return str(opener.open(self._run))
        except Pyro5.errors.CommunicationError as err:
            if refused(err):
                raise connection_error(self._where, err) from None
            advice = tls.hint(err, host) or (
                "Is the run (pypsrun) or pypsserver still running, and is the address reachable?"
            )
            raise PastSetConnectionError(f"cannot reach the PastSet server at {self._where}: {err}. {advice}") from None

    # ------------------------------------------------------------- transport
    def _link(self) -> Link:
        """This thread's connection to the space (opened on first use)."""
        link: Link | None = getattr(self._local, "link", None)
        if link is not None:
            return link
        made = open_link(self._spec)
        self._local.link = made
        with self._plock:
            self._links.append(made)
        return made

    def _call(self, op: str, *args: Any) -> Any:
        assert op in OPERATIONS, op
        link = self._link()
        try:
            reply = link.call((op, *args))
        except SerialisationError as err:
            # Raised here, in the user's call, rather than from deep inside the codec.
            raise SerialisationError(str(err)) from None
        except KeyboardInterrupt:
            # The reply may still come: this connection is out of step, so drop it.
            self._local.link = None
            try:
                link.close()
            except Exception:
                pass
            template = self._templates.get(args[0]) if args and isinstance(args[0], int) else None
            where = f" on {show_template(template)}" if template is not None else ""
            raise Interrupted(f"interrupted while waiting in {op}{where}") from None
        except OSError as err:
            self._local.link = None
            raise PastSetConnectionError(
                f"lost the connection to the PastSet server ({self._where}): {err}; "
                "the run has probably ended or its server died"
            ) from None
        if reply[0] == 0:
            return reply[1]
        _raise_reply(reply)

    # ------------------------------------------------------------ operations
    def enter(
        self, template: tuple, xfunction: str | None = None, leases: bool = False, strict: bool | None = None
    ) -> ElementHandle:
        """Create or bind to the element for ``template``; returns its handle.

        ``xfunction`` names an X-function module in PSBIN on the server.  With
        ``leases=True`` every unindexed observe is a lease the observer must
        :meth:`ElementHandle.ack`; if its connection dies first (the worker was
        killed), the tuple is handed to the next observer.  Both take effect only
        when this call creates the element.  ``strict=True`` (default: the
        PSSTRICT setting, off) makes this handle refuse a moved value that is not
        a tuple of the template's length, with a hint; loose is pyPastSet's way.
        """
        check_template(template)
        if xfunction is not None and not isinstance(xfunction, str):
            raise PastSetTypeError(f"xfunction must be a module name (str), got {type(xfunction).__name__}")
        eid, stored, _leased = self._call("enter", template, xfunction, bool(leases))
        self._templates[eid] = stored
        return ElementHandle(self, eid, stored, self._strict if strict is None else bool(strict))

    def delelement(self, element: ElementHandle | tuple) -> None:
        """Delete an element now (by handle or template); blocked calls on it raise."""
        if isinstance(element, ElementHandle):
            self._call("delelement", element._eid)
        else:
            self._call("delelement", check_template(element))

    def spawn(self, app: str, args: str | list[Any] | tuple[Any, ...] = "") -> str:
        """Start ``app`` (a Python file in PSBIN) on some idle client; returns the task id."""
        if not isinstance(app, str):
            raise PastSetTypeError(f"spawn needs the application's file name (str), got {type(app).__name__}")
        check_spawn_target(app)  # refused here, before anything is sent; the server checks PSBIN itself
        if not isinstance(args, (str, list, tuple)):
            raise PastSetTypeError(f"spawn arguments must be a string or a list/tuple, got {type(args).__name__}")
        if not isinstance(args, str):
            args = [str(a) for a in args]
        return self._call("spawn", app, args)

    def halt(self) -> None:
        """No more tasks: clients shut down once earlier spawns are dispatched."""
        self._call("halt")

    def close(self) -> None:
        """Close this handle's connections (they also close when the program exits)."""
        with self._plock:
            links, self._links = self._links, []
        for each in links:
            try:
                each.close()
            except Exception:
                pass
        self._local = threading.local()

    def __enter__(self) -> PastSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PastSet {self._run!r} at {self._uri}>"


class ElementHandle:
    """A handle on one element; every call goes to the server and blocks as specified."""

    __slots__ = ("_eid", "_pset", "_strict", "_template")

    def __init__(self, pset: PastSet, eid: int, template: tuple, strict: bool = False) -> None:
        self._pset = pset
        self._eid = eid
        self._template = template
        self._strict = strict

    def _check(self, data: Any) -> None:
        """Strict mode: ``data`` must be a tuple as long as the template (a hint says how to fix it)."""
        if not self._strict or (isinstance(data, tuple) and len(data) == len(self._template)):
            return
        size = len(self._template)
        what = f"a tuple of {len(data)}" if isinstance(data, tuple) else f"{type(data).__name__} {data!r:.60}"
        hint = _suggest(self._template, data)
        problem = (
            f"strict mode: a move to {show_template(self._template)} takes a tuple of {size} value(s), got {what}"
            + (f"; did you mean {hint}?" if hint else "")
        )
        raise (PastSetValueError if isinstance(data, tuple) else PastSetTypeError)(problem)

    def move(self, data: Any, timeout: float | None = None) -> None:
        """Append ``data`` at index ``last``; blocks while delta leaves no room."""
        self._check(data)
        self._pset._call("move", self._eid, data, _timeout(timeout))

    def observe(self, index: int = -1, timeout: float | None = None) -> Any:
        """Unindexed: take the oldest unobserved tuple.  Indexed: read tuple ``index``."""
        return self._pset._call("observe", self._eid, check_index(index), _timeout(timeout))

    def move_many(self, tuples: list[Any], timeout: float | None = None) -> None:
        """Move many tuples in one call, in order (the batch form of :meth:`move`)."""
        if not isinstance(tuples, (list, tuple)):
            raise PastSetTypeError(f"move_many takes a list of tuples, got {type(tuples).__name__}")
        if self._strict:  # checked inline: a batch is often thousands of tuples
            size = len(self._template)
            for data in tuples:
                if not (isinstance(data, tuple) and len(data) == size):
                    self._check(data)
        self._pset._call("move_many", self._eid, list(tuples), _timeout(timeout))

    def observe_many(self, count: int, timeout: float | None = None) -> list[Any]:
        """Take up to ``count`` unobserved tuples in one call (at least one; blocks until then).

        Atomic like :meth:`observe`: each tuple goes to exactly one observer.
        """
        return self._pset._call("observe_many", self._eid, check_index(count), _timeout(timeout))

    def ack(self, move_to: ElementHandle | None = None, result: Any = None, timeout: float | None = None) -> None:
        """Acknowledge the oldest tuple this thread observed from a leased element.

        With ``move_to`` and ``result``, ``result`` is moved into ``move_to`` in the
        same request: a result and its acknowledgement happen together or not at
        all, so a bag of tasks delivers every result exactly once even when
        workers are killed.
        """
        target = None if move_to is None else move_to._eid
        self._pset._call("ack", self._eid, target, result, _timeout(timeout))

    def first(self) -> int:
        """Index of the oldest tuple not yet observed without an index."""
        return self._pset._call("first", self._eid)

    def last(self) -> int:
        """Number of tuples moved so far."""
        return self._pset._call("last", self._eid)

    def delta(self, value: int | None = None) -> int | None:
        """Read delta, or set and return it (None, 0 or negative: unbounded)."""
        return self._pset._call("delta", self._eid, check_delta(value))

    def axe(self, index: int) -> None:
        """Allow tuples below ``index`` (and already observed) to be freed."""
        self._pset._call("axe", self._eid, check_index(index))

    def template(self) -> tuple:
        """The element's template (raises ElementDeletedError once it was deleted)."""
        return self._pset._call("template", self._eid)

    def __repr__(self) -> str:
        return f"<PastSet element {self._template!r}>"


def _suggest(template: tuple, data: Any) -> str | None:
    """The move strict mode expects, if ``data`` is the values without the template's constants."""
    values = data if isinstance(data, tuple) else (data,)
    slots = [i for i, part in enumerate(template) if isinstance(part, type)]
    if len(values) != len(slots) or not slots:
        return None
    fixed = list(template)
    for i, value in zip(slots, values, strict=True):
        fixed[i] = value
    text = ", ".join(f"{v!r:.30}" for v in fixed)
    return f"({text},)" if len(fixed) == 1 else f"({text})"


def _open_store(announced: str, own: str, run: str, task: str) -> Any:
    """The Redis store the server announced, with this process's own PSSTORE credentials if it has them."""
    from pastset.transport.redis_store import RedisStore, parse_store

    try:
        theirs = parse_store(announced)
        mine = parse_store(own) if own else None
    except ValueError as err:
        raise ConfigurationError(f"PSSTORE is invalid: {err}") from None
    assert theirs is not None
    if mine is not None and not mine.same_place(theirs):
        raise ConfigurationError(
            f"this process's PSSTORE ({mine.redacted()}) is not the store of run {run!r} ({theirs.redacted()}); "
            "unset PSSTORE here, or set it to the run's store"
        )
    if mine is not None:  # the run's WAIT setting holds for every client, whatever this process's PSSTORE says
        mine = replace(mine, wait=theirs.wait, wait_ms=theirs.wait_ms)
    return RedisStore(mine or theirs, run, task)


def _timeout(timeout: float | None) -> float | None:
    return check_timeout(timeout)
