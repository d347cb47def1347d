"""The space a server hosts, as both transports reach it: one ``call`` per operation.

:class:`SpaceService` runs the operations of :mod:`pastset.transport.ops` on
one :class:`~pastset.core.space.Space`.  Its two entries are

- :meth:`SpaceService.call`, the Pyro5 object's method: it runs a request to the
  end in Pyro5's thread for the connection, blocking as the operation does;
- :meth:`SpaceService.start` / :meth:`~SpaceService.finish`, for the direct
  channel's event loop (:mod:`pastset.transport.channel_server`): a request on a
  plain element that cannot complete becomes a waiter queued on it, work that
  may take long (anything with an X-function) goes to the loop's pool.

Either way the caller is a :class:`pastset.core.waits.Caller`, the one object
that says who asks: the task it serves, where it runs, the leases it holds.

Messages are opaque bytes encoded by :mod:`pastset.wire`.  Nothing received is
ever unpickled.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import Pyro5.api
import Pyro5.callcontext

from pastset import wire
from pastset.core.checks import check_index, check_timeout
from pastset.core.element import Element, Waiter, calling, deadline
from pastset.core.scheduler import Scheduler
from pastset.core.space import Space
from pastset.core.waits import Caller
from pastset.errors import (
    ConfigurationError,
    PastSetError,
    PastSetTimeoutError,
    PastSetTypeError,
    PastSetValueError,
    RemoteError,
    XFunctionError,
)
from pastset.transport.channel_server import LARGE
from pastset.transport.ops import ELEMENT, OPERATIONS
from pastset.transport.serving import Hooks, Outcome, Pending, Reply

__all__ = ["SpaceService", "pyro_caller", "pyro_connection"]

log = logging.getLogger(__name__)


def pyro_connection() -> Any:
    return getattr(Pyro5.callcontext.current_context, "client", None)


def pyro_caller() -> Caller | None:
    """The caller of the Pyro5 request this thread serves (attached at its handshake)."""
    return getattr(pyro_connection(), "pastset_caller", None)


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


def _timeout(value: Any) -> float | None:
    return check_timeout(value)  # a peer that skipped the client's check gets the client's error


def _large(value: Any) -> bool:
    """True if ``value`` (a tuple, or a list of them) holds more than LARGE bytes of strings, bytes or arrays."""
    items = value if isinstance(value, list) else [value]
    size = 0
    for item in items[:64]:
        for part in item if isinstance(item, tuple) else (item,):
            if isinstance(part, (bytes, bytearray, str)):
                size += len(part)
            else:
                size += getattr(part, "nbytes", 0) if not isinstance(part, type) else 0
    return size > LARGE


#: the reply of an operation that returns nothing, encoded once
_DONE = wire.encode_parts((0, None))[0]


def _encode_reply(result: Any, taken: Any) -> Reply:
    return Reply(_encoded((0, result), wire.encode_parts), taken)


class _Gauge:
    """Counts calls in progress, so a stopping server can let their replies go out."""

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
    """The operations on one :class:`~pastset.core.space.Space`.

    A request is ``encode((op, *args))``; a reply is ``encode((0, result))`` or
    ``encode((1, error_class_name, message, remote_traceback))``.
    """

    def __init__(self, space: Space, scheduler: Scheduler | None = None) -> None:
        self.space = space
        self.scheduler = scheduler
        self.calls = _Gauge()
        #: Port of the server's direct channel (pastset.transport.channel), None when it is off.
        self.channel_port: int | None = None
        #: The Redis store's address without credentials (PSSTORE), None when elements live here.
        self.store: str | None = None
        #: The server's view of the elements in that store.
        self.admin: Any = None
        self._ops: dict[str, Callable[..., Any]] = {
            "enter": self._enter,
            "move": self._move,
            "observe": self._observe,
            "first": lambda caller, eid: self._apply(eid, "first"),
            "last": lambda caller, eid: self._apply(eid, "last"),
            "template": self._template,
            "delta": lambda caller, eid, value=None: self._apply(eid, "delta", value),
            "axe": lambda caller, eid, index: self._apply(eid, "axe", index),
            "delelement": lambda caller, target: self.space.delelement(target),
            "ack": self._ack,
            "move_many": self._move_many,
            "observe_many": self._observe_many,
            "spawn": lambda caller, app, args=None: self._need_scheduler().spawn(app, args),
            "halt": lambda caller: self._need_scheduler().halt(),
            "ping": lambda caller: self.space.name,
            "channel": lambda caller: self.channel_port,
            "store": lambda caller: self.store,
        }
        assert set(self._ops) == set(OPERATIONS), "the service serves exactly the operations of transport.ops"

    # ------------------------------------------------------------- Pyro5
    def call(self, request: bytes) -> bytes:
        """Run one encoded operation to the end and return the encoded reply (the Pyro5 entry)."""
        caller = pyro_caller() or Caller()
        with self.calls, calling(caller):
            return _encoded(self._call(caller, request, None), wire.encode)

    def call_parts(
        self, body: bytes, buffers: list[bytearray | memoryview], caller: Caller | None = None
    ) -> list[bytes | memoryview]:
        """The same with large arrays out of band: the reply as [body, buffer, ...]."""
        caller = caller or Caller()
        with self.calls, calling(caller):
            return _encoded(self._call(caller, body, buffers), wire.encode_parts)

    # ------------------------------------------------------ the channel's loop
    def start(self, caller: Caller, body: bytes, buffers: list[bytearray | memoryview], hooks: Hooks) -> Outcome:
        """Start one request without waiting: a reply, a waiter queued on a plain element, or work for the pool."""
        with self.calls, calling(caller):  # named on the loop too: the run report counts who changed what
            try:
                message = self._parse(body, buffers)
            except PastSetError as err:
                return Reply(wire.encode_parts(_error_reply(err)))
            op = message[0]
            if op == "move" or op == "observe":
                now = self._now(caller, message)
                if now is not None:
                    return now
            element = None
            if op in ELEMENT and len(message) > 1:
                try:
                    element = self.space.element(message[1])
                except PastSetError:
                    element = None  # fails at once below, with the usual error
            if element is not None and type(element) is not Element:
                return partial(self._pooled, caller, message)  # an X-function: off the loop
            if op == "enter" and len(message) > 2 and message[2]:
                return partial(self._pooled, caller, message)  # may load an X-function
            if op == "delelement":
                return partial(self._pooled, caller, message)  # ends an element: takes its lock
            if op == "ack" and len(message) > 2 and message[2] is not None:
                return partial(self._pooled, caller, message)  # moves a result, which may wait
            if element is not None and op in ("move", "observe", "move_many", "observe_many"):
                try:
                    return self._submit(caller, element, message, hooks)
                except PastSetError as err:
                    return Reply(wire.encode_parts(_error_reply(err)))
                except TypeError as err:
                    return Reply(wire.encode_parts(_error_reply(RemoteError(f"malformed request: {err}"))))
            return Reply(_encoded(self._run(caller, message), wire.encode_parts))

    def _now(self, caller: Caller, message: tuple) -> Outcome | None:
        """The reply of a move or unindexed observe on a plain element that completes at once, else None.

        The common case of a bag of tasks, taken without a waiter: the element
        does the operation under its lock if nothing would make it wait, and
        anything else (a wait, an error to raise, an indexed observe, an
        X-function) goes the general way, which answers it fully.
        """
        size = len(message)
        if size > 4 or size < 2:
            return None
        if size == 4 and message[3] is not None:
            try:
                _timeout(message[3])
            except PastSetError:
                return None  # the general path says what is wrong with it
        try:
            element = self.space.element(message[1])
        except PastSetError:
            return None
        if type(element) is not Element:
            return None
        if message[0] == "move":
            if size < 3 or not element.move_now(message[2]):
                return None
            self.space.moves += 1
            return Reply([_DONE])
        if size > 2 and (type(message[2]) is not int or message[2] >= 0):
            return None
        took = element.take_now()
        if took is None:
            return None
        index, value = took
        space = self.space
        space.observes += 1
        taken = None
        if element.eid in space.leased:  # held until acknowledged; leases cover a later death
            caller.leases.append((space, element.eid, index, value))
        else:
            taken = (element, [index], [value])
        if _large(value):
            return partial(_encode_reply, value, taken)  # encoded on the pool, off the loop
        return Reply(_encoded((0, value), wire.encode_parts), taken)

    def _pooled(self, caller: Caller, message: tuple) -> Reply:
        with self.calls, calling(caller):
            return Reply(_encoded(self._run(caller, self._for_user_code(message)), wire.encode_parts))

    def _for_user_code(self, message: tuple) -> tuple:
        """The message with plain ``bytes`` where it goes to an X-function (user code), not HeldBytes.

        A plain element only stores and hands on what it is given, so it keeps
        large bytes in the memory they arrived in; an X-function's code may
        test for ``bytes`` or slice them, so it gets the real thing (one copy).
        """
        if message[0] == "ack":
            return wire.released(message)  # its result may go to an X-function element
        if message[0] in ELEMENT and len(message) > 2:
            try:
                element = self.space.element(message[1])
            except PastSetError:
                return message
            if type(element) is not Element:
                return wire.released(message)
        return message

    def _submit(self, caller: Caller, element: Element, message: tuple, hooks: Hooks) -> Outcome:
        op, _eid, *args = message
        if len(args) > 2:
            raise TypeError(f"{op} takes at most 2 arguments after the element, got {len(args)}")
        timeout = _timeout(args[1] if len(args) > 1 else None)
        if op == "move":
            if not args:
                raise TypeError("move needs the tuple to move")
            waiter = Waiter("move", data=[args[0]], count=1)
        elif op == "move_many":
            tuples = args[0] if args else ()
            if not isinstance(tuples, (list, tuple)):
                raise PastSetTypeError(f"move_many takes a list of tuples, got {type(tuples).__name__}")
            if not tuples:
                return Reply(wire.encode_parts((0, None)))
            waiter = Waiter("move", data=list(tuples), count=len(tuples))
        elif op == "observe":
            waiter = Waiter("observe", index=check_index(args[0] if args else -1))
            if waiter.index < 0:
                waiter.index = -1
        else:
            count = check_index(args[0] if args else 1)
            if count < 1:
                raise PastSetValueError(f"observe_many needs a count of at least 1, got {count}")
            waiter = Waiter("observe_many", count=count)
        waiter.caller = caller
        waiter.timeout = timeout
        waiter.notify = hooks.notify
        if waiter.op != "move":
            waiter.alive = hooks.alive
        pending = Pending(element, waiter)
        if element.submit(waiter):
            return self.finish(pending, caller)
        if timeout is not None and timeout <= 0 and element.cancel(waiter):
            return self.timed_out(pending)
        return pending

    def finish(self, pending: Pending, caller: Caller) -> Outcome:
        """The reply of a waiter that completed, with what it took (to give back if the reply never arrives)."""
        waiter, element = pending.waiter, pending.element
        if waiter.error is not None:
            return Reply(wire.encode_parts(_error_reply(waiter.error)))
        taken = None
        if waiter.op == "move":
            self.space.moves += waiter.count
        elif waiter.index < 0:
            values = waiter.result if waiter.op == "observe_many" else [waiter.result]
            self.space.observes += len(values)
            if element.eid in self.space.leased:  # held until acknowledged; leases cover a later death
                caller.leases.extend(
                    (self.space, element.eid, index, value) for index, value in zip(waiter.taken, values, strict=True)
                )
            else:
                taken = (element, waiter.taken, values)
        else:
            self.space.observes += 1
        if _large(waiter.result):
            return partial(_encode_reply, waiter.result, taken)  # encoded on the pool, off the loop
        return Reply(_encoded((0, waiter.result), wire.encode_parts), taken)

    def timed_out(self, pending: Pending) -> Reply:
        """The reply of a waiter that gave up."""
        err = PastSetTimeoutError(f"operation on element {pending.element.template()!r} did not complete in time")
        return Reply(wire.encode_parts(_error_reply(err)))

    # ---------------------------------------------------------------- common
    def _call(self, caller: Caller, request: bytes, buffers: list[bytearray | memoryview] | None) -> tuple:
        try:
            message = self._parse(request, buffers)
        except PastSetError as err:
            return _error_reply(err)
        return self._run(caller, message if buffers is None else self._for_user_code(message))

    def _parse(self, request: bytes, buffers: list[bytearray | memoryview] | None) -> tuple:
        if not isinstance(request, bytes):
            raise wire.SerialisationError(
                "requests must be bytes sent with Pyro5's msgpack serializer; use pastset.PastSet"
            )
        message = wire.decode(request) if buffers is None else wire.decode_parts(request, buffers, hold=True)
        if not isinstance(message, tuple) or not message or message[0] not in self._ops:
            raise wire.SerialisationError(f"unknown request {message!r:.80}")
        return message

    def _run(self, caller: Caller, message: tuple) -> tuple:
        try:
            return 0, self._ops[message[0]](caller, *message[1:])
        except PastSetError as err:
            return _error_reply(err)
        except TypeError as err:  # wrong arity from a mismatched client
            return _error_reply(RemoteError(f"malformed request: {err}"))
        except Exception as err:  # a bug: report it with its traceback, keep serving
            log.exception("error while serving a request")
            return _error_reply(err)

    # ----------------------------------------------------------------- ops
    def _enter(
        self, caller: Caller, template: tuple, xfunction: str | None = None, leases: bool = False
    ) -> tuple[int, tuple, bool]:
        eid = self.space.enter(template, xfunction, bool(leases))
        # What the space stored: an X-function may override or shadow template() (pyPastSet's xtest.py).
        return eid, self.space.template_of(eid), eid in self.space.leased

    def _template(self, caller: Caller, eid: int) -> tuple:
        Element.template(self.space.element(eid))  # the base class's check only: a deleted element raises
        return self.space.template_of(eid)

    def _move(self, caller: Caller, eid: int, data: Any, timeout: float | None = None) -> None:
        self._apply(eid, "move", data, timeout=timeout)
        self.space.moves += 1

    def _observe(self, caller: Caller, eid: int, index: int = -1, timeout: float | None = None) -> Any:
        element = self.space.element(eid)
        plain = type(element) is Element or not isinstance(index, int) or index >= 0
        if isinstance(index, int) and index < 0 and eid in self.space.leased:
            with element.lock:  # the index taken is known only while nobody else can observe
                data = (
                    self._apply(eid, "observe", index, timeout=timeout)
                    if plain
                    else self._x_observe(eid, element, index, timeout)
                )
                taken = self.space.lease_index(eid)
            self.space.observes += 1
            caller.leases.append((self.space, eid, taken, data))  # held until acknowledged or handed back
            return data
        data = (
            self._apply(eid, "observe", index, timeout=timeout)
            if plain
            else self._x_observe(eid, element, index, timeout)
        )
        self.space.observes += 1
        return data

    def _x_observe(self, eid: int, element: Element, index: int, timeout: float | None) -> Any:
        """An X-function's unindexed observe whose value must be sendable, or its tuple goes back.

        The element's lock is held from the observe to the check, so the tuple
        the X-out took is the latest one taken, and it goes back to its own index.
        """
        with element.lock:
            data = self._apply(eid, "observe", index, timeout=timeout)
            try:
                wire.encode(data)
            except wire.SerialisationError as err:
                taken = Element.taken_last(element)
                kept = taken is not None and Element.unobserve(element, taken)
                raise XFunctionError(
                    f"X-function {self.space.xfunction_of(eid)!r} returned a value that cannot be sent: {err}"
                    + ("; the tuple stays in the element" if kept else "")
                ) from None
        return data

    def _move_many(self, caller: Caller, eid: int, tuples: list[Any], timeout: float | None = None) -> None:
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

    def _observe_many(self, caller: Caller, eid: int, count: int, timeout: float | None = None) -> list[Any]:
        element = self.space.element(eid)
        with element.lock:  # the indices taken are known only while nobody else can observe
            if type(element) is Element:
                with deadline(timeout):
                    taken = element.observe_many(count)
            else:  # an X-function filters each tuple
                taken = [self._apply(eid, "observe", -1, timeout=timeout)]
                while len(taken) < count and element.first() < element.last():
                    taken.append(self._apply(eid, "observe", -1))
            start = self.space.lease_index(eid, len(taken)) if eid in self.space.leased else 0
        self.space.observes += len(taken)
        if eid in self.space.leased:
            caller.leases.extend((self.space, eid, index, data) for index, data in enumerate(taken, start))
        return taken

    def _ack(
        self,
        caller: Caller,
        eid: int,
        result_eid: int | None = None,
        result: Any = None,
        timeout: float | None = None,
    ) -> None:
        """Acknowledge the oldest leased tuple of ``eid`` on this connection.

        With ``result_eid`` the result tuple is moved first, in the same request
        and the same journal record, so a result and its acknowledgement happen
        together or not at all, even across a crash of the server.
        """
        leases = caller.leases
        position = next((i for i, (s, e, _, _) in enumerate(leases) if s is self.space and e == eid), None)
        if position is None:
            raise PastSetValueError(
                "nothing to acknowledge: this thread holds no unacknowledged tuple of that element "
                "(ack follows an unindexed observe of an element entered with leases=True)"
            )
        index = leases[position][2]
        if result_eid is None:
            self.space.ack(eid, index)
        else:  # the result's move record also records the acknowledgement: a crash splits neither
            self.space.ack(eid, index, result_eid, lambda: self._move(caller, result_eid, result, timeout))
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

    def _need_scheduler(self) -> Scheduler:
        if self.scheduler is None:
            raise ConfigurationError(
                f"the PastSet {self.space.name!r} has no scheduler, so spawn/halt are not available; "
                "start the run with pypsrun (or pypsscheduler) to run tasks on clients"
            )
        return self.scheduler
