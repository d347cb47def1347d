"""A named tuple space: the elements of one run, with no network code.

The :class:`Space` maps templates to :class:`~pastset.core.element.Element` objects,
creates them (with their X-function, if any), journals and recovers them,
settles leases, deletes elements and ends the run, and answers the scheduler
whether the run has gone quiet (every running task blocked in an operation that
nothing can complete any more).  Loading X-functions from PSBIN is in
:mod:`pastset.core.xfunctions`; the bookkeeping of who blocks and what changed,
which the elements report to, is :class:`pastset.core.activity.Activity`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pastset.core.activity import Activity, ElementMonitor
from pastset.core.element import Element, check_template, deleted_error, template_key
from pastset.core.journal import Journal
from pastset.core.xfunctions import build_element, load_xfunction
from pastset.errors import (
    PastSetError,
    PastSetValueError,
    RunEndedError,
)

__all__ = ["Space", "describe", "load_xfunction"]

log = logging.getLogger(__name__)


class Space:
    """The elements of one run, plus what is needed to end the run cleanly.

    ``current_task`` tells which spawned task (if any) the calling thread serves;
    the server supplies it from the connection, tests may leave it out.
    """

    def __init__(
        self,
        name: str,
        psbin: list[str] | None = None,
        current_task: Callable[[], str | None] = lambda: None,
        journal: Journal | None = None,
    ) -> None:
        self.name = name
        self.psbin = list(psbin or ["."])
        #: With elements held elsewhere (a Redis store): whether the running tasks are all stuck there,
        #: and what ends the elements there at the end of the run.  None: the elements are here.
        self.store_quiet: Callable[[set[str]], bool] | None = None
        self.store_end: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._by_key: dict[tuple, int] = {}
        self._elements: dict[int, Element] = {}
        self._xnames: dict[int, str] = {}
        #: the template each element was entered with, as the space stored it: an
        #: X-function may shadow ``template`` (pyPastSet's xtest.py sets
        #: ``self.template = tuple(...)``), so bookkeeping never asks the element
        self._templates: dict[int, tuple] = {}
        #: elements whose unindexed observes are leases that must be acknowledged
        self.leased: set[int] = set()
        self._ids = itertools.count(1)
        self._ended: RunEndedError | None = None
        self._paused = False
        #: elements paused one by one (an operator holds them: the run is not stalled)
        self.held: set[int] = set()
        #: notified whenever a task starts or stops blocking, or the state changes;
        #: the elements report to it (a threading.Condition, with the counts of who blocks)
        self.activity = Activity(current_task, self._templates)
        #: every blocked operation of this space, with its caller (who waits on what)
        self.waits = self.activity.waits
        self.moves = 0
        self.observes = 0
        self._counted: dict[int, ElementMonitor] = {}
        self.journal: Journal | None = None
        #: what the next "move" journal record of this thread also records (a lease it settles)
        self._note = threading.local()
        recovered: dict[tuple[int, int], Any] = {}
        if journal is not None:
            if journal.recovered:
                recovered = self._recover(journal.path, journal.recovered)
            self.journal = journal
            for eid, element in self._elements.items():  # journal from now on
                self._attach(eid, element)
        if recovered:  # leases that were never acknowledged before the crash: hand each out again, once
            for (eid, index), data in sorted(recovered.items(), key=lambda item: item[0]):
                self.hand_back(eid, index, data)
            log.warning(
                "space %s: %d leased tuple(s) never acknowledged before the restart were handed out again",
                self.name,
                len(recovered),
            )

    # ------------------------------------------------------------- elements
    def enter(self, template: Any, xfunction: str | None = None, leases: bool = False) -> int:
        """Create or find the element for ``template`` and return its id.

        ``xfunction`` and ``leases`` take effect only when this call creates the element.
        """
        template = check_template(template)
        key = template_key(template)
        with self._lock:
            if self._ended is not None:
                raise RunEndedError(*self._ended.args)
            eid = self._by_key.get(key)
            if eid is not None:
                return eid
            if not xfunction:
                return self._new(template, Element(template), None, leases)
        # An X-function is loaded and created outside the space's lock: its import
        # or __init__ may take long, and every other enter and delelement need that lock.
        element = self._build(template, xfunction)
        with self._lock:
            if self._ended is not None:
                raise RunEndedError(*self._ended.args)
            eid = self._by_key.get(key)
            if eid is not None:  # another caller entered it meanwhile: theirs wins
                return eid
            return self._new(template, element, xfunction, leases)

    def _new(self, template: tuple, element: Element, xfunction: str | None, leases: bool) -> int:
        """Register a new element (under the space's lock) and journal it."""
        eid = next(self._ids)
        self._register(eid, template, element, xfunction, leases)
        if self.journal is not None:
            self.journal.write(("enter", eid, template, xfunction, leases))
        log.debug(
            "space %s: element %d %r%s", self.name, eid, template, f" with X-function {xfunction}" if xfunction else ""
        )
        return eid

    def _build(self, template: tuple, xfunction: str | None) -> Element:
        return build_element(template, xfunction, self.psbin)

    def _create(self, eid: int, template: tuple, xfunction: str | None, leases: bool) -> Element:
        return self._register(eid, template, self._build(template, xfunction), xfunction, leases)

    def _register(self, eid: int, template: tuple, element: Element, xfunction: str | None, leases: bool) -> Element:
        self._attach(eid, element)
        if self._paused:
            element.pause(True)
        self._templates[eid] = template
        self._by_key[template_key(template)] = eid
        self._elements[eid] = element
        if xfunction:
            self._xnames[eid] = xfunction
        if leases:
            self.leased.add(eid)
        return element

    def _attach(self, eid: int, element: Element) -> None:
        journal = self.journal
        monitor = ElementMonitor(self.activity)
        self._counted[eid] = monitor
        if journal is None:
            element.attach(monitor, None, eid)
            return
        note = self._note

        def record(*change: Any) -> None:
            extra = getattr(note, "extra", None)
            if extra is not None and change[0] == "move":
                note.extra = None  # one move settles the lease: both in one record, so a crash splits neither
                change = (*change, *extra)
            journal.write((eid, *change))

        element.attach(monitor, record, eid)

    def tally(self) -> dict[str, dict[str, int]]:
        """Operations that changed each element, per task ("" for the application): who took what."""
        return {str(eid): dict(monitor.counts) for eid, monitor in list(self._counted.items())}

    # ------------------------------------------------------------- leases
    def lease_index(self, eid: int, count: int = 1) -> int:
        """The index of the first of the ``count`` tuples an unindexed observe just took (call under the lock).

        The tuples a leased element hands out are named by their index, so that
        the journal can tell which of them were acknowledged.
        """
        element = self.element(eid)
        if count == 1:
            latest = Element.taken_last(element)
            if latest is not None:
                return latest
        return Element.first(element) - count

    def ack(self, eid: int, index: int, result_eid: int | None = None, move: Callable[[], Any] | None = None) -> None:
        """Acknowledge the leased tuple ``index`` of ``eid``; with ``move``, do it in the same journal record.

        ``move`` moves the result into ``result_eid``: its move record also
        records the acknowledgement, so after a crash both happened or neither.
        """
        if move is None:
            if self.journal is not None:
                self.journal.write(("ack", eid, index))
            return
        self._note.extra = ("ack", eid, index)
        try:
            move()
        finally:
            self._note.extra = None

    def hand_back(self, eid: int, index: int, data: Any) -> None:
        """Put leased tuple ``index`` of ``eid`` back at the element's end, for the next observer.

        The move record says which lease it settles, so a second crash does not
        hand it out twice.
        """
        self._note.extra = ("back", index)
        try:
            self.element(eid).requeue(data)
        finally:
            self._note.extra = None

    def _recover(self, path: Path, records: list[tuple[Any, ...]]) -> dict[tuple[int, int], Any]:
        """Rebuild the elements from the records of an earlier server of this run.

        Returns the leases that were handed out and never settled (acknowledged,
        or handed back), as ``{(element id, index): tuple}``.
        """
        open_leases: dict[tuple[int, int], Any] = {}
        top = 0
        for record in records:
            if record[0] == "enter":
                _, eid, template, xfunction, leases = record
                self._create(eid, template, xfunction, leases)
                top = max(top, eid)
            elif record[0] == "del":
                element = self._elements.get(record[1])
                if element is not None:
                    template = self._templates[record[1]]
                    self._by_key.pop(template_key(template), None)
                    element.end(deleted_error(template))
                    open_leases = {k: v for k, v in open_leases.items() if k[0] != record[1]}
            elif record[0] == "ack":
                open_leases.pop((record[1], record[2]), None)
            else:
                eid, kind, *args = record
                element = self._elements.get(eid)
                if element is None:
                    continue
                if kind == "observe" and eid in self.leased:
                    first = Element.first(element)
                    for index in range(first, first + (args[0] if args else 1)):
                        open_leases[(eid, index)] = Element.observe(element, index)
                element.replay(kind, *args)
                if kind == "move" and len(args) > 1:  # a move that settled a lease
                    lease = (args[2], args[3]) if args[1] == "ack" else (eid, args[2])
                    open_leases.pop(lease, None)
        self._ids = itertools.count(top + 1)
        log.warning(
            "space %s: recovered %d element(s) from %d journal record(s) in %s",
            self.name,
            len(self._by_key),
            len(records),
            path,
        )
        return open_leases

    def element(self, eid: int) -> Element:
        """The element with id ``eid`` (a deleted one raises on every operation)."""
        try:
            return self._elements[eid]
        except (KeyError, TypeError):
            raise PastSetValueError(f"no element with id {eid!r} in this PastSet; get handles from enter()") from None

    def template_of(self, eid: int) -> tuple:
        """The template element ``eid`` was entered with (never asks the element, which may override it)."""
        try:
            return self._templates[eid]
        except (KeyError, TypeError):
            raise PastSetValueError(f"no element with id {eid!r} in this PastSet; get handles from enter()") from None

    def xfunction_of(self, eid: int) -> str | None:
        """The X-function module name of element ``eid``, if it has one."""
        return self._xnames.get(eid)

    def delelement(self, target: int | tuple) -> None:
        """Delete an element (by id or template) now; blocked calls on it raise."""
        with self._lock:
            if isinstance(target, tuple):
                eid = self._by_key.get(template_key(check_template(target)))
                if eid is None:
                    return
            else:
                eid = target
            element = self.element(eid)
            template = self._templates[eid]
            key = template_key(template)
            if self._by_key.get(key) == eid:
                del self._by_key[key]
            if self.journal is not None:
                self.journal.write(("del", eid))
        element.end(deleted_error(template))

    def elements(self) -> list[tuple[int, Element]]:
        """The live elements, oldest first."""
        with self._lock:
            return [(eid, self._elements[eid]) for eid in self._by_key.values()]

    def pause(self, paused: bool = True, match: str = "") -> list[int]:
        """Hold (or release) unindexed observes on every element, or those matching ``match``.

        ``match`` is an element id or a piece of the template's text.  Pausing
        everything also pauses elements entered later.  Returns the ids touched.
        """
        touched = []
        with self._lock:
            if not match:
                self._paused = paused
            for eid in self._by_key.values():
                element = self._elements[eid]
                if not match or match == str(eid) or match in repr(self._templates[eid]):
                    element.pause(paused)
                    touched.append(eid)
            if not match:
                self.held.clear()
            elif paused:
                self.held.update(touched)
            else:
                self.held.difference_update(touched)
        return touched

    @property
    def paused(self) -> bool:
        """True while every element is paused."""
        return self._paused

    def end(self, reason: str = "the run has ended") -> None:
        """End the run: every blocked and later operation raises RunEndedError."""
        with self._lock:
            if self._ended is None:
                self._ended = RunEndedError(reason)
            elements = list(self._elements.values())
        for element in elements:
            element.end(RunEndedError(reason))
        if self.store_end is not None:
            self.store_end(reason)

    @property
    def generation(self) -> int:
        """A counter that moves on every change; equal values mean nothing happened."""
        return self.activity.generation

    @property
    def ended(self) -> bool:
        """True once :meth:`end` was called."""
        return self._ended is not None

    # ------------------------------------------------ Monitor (for elements)
    def waiting(self, step: int) -> None:
        """Count blocked calls per task (Monitor protocol; see :meth:`Activity.waiting`)."""
        self.activity.waiting(step)

    def waiting_for(self, step: int, waiter: Any, element: Element) -> None:
        """One waiter starts (+1) or stops (-1) waiting on ``element`` (see :meth:`Activity.waiting_for`)."""
        self.activity.waiting_for(step, waiter, element)

    def changed(self) -> None:
        """Note a state change (Monitor protocol); cheap, called under element locks."""
        self.activity.changed()

    def task_gone(self, task: str) -> None:
        """Forget a finished task's bookkeeping and wake those waiting on activity."""
        self.activity.task_gone(task)

    def quiet(self, running: set[str]) -> bool:
        """True if every running task is blocked and no blocked call can go on.

        The generation counter guards the scan: any change while we look means
        the answer may be stale, so we say "not quiet" and are asked again.
        """
        if self.store_quiet is not None:
            return self.store_quiet(running)
        activity = self.activity
        with activity:
            if any(activity.blocked.get(task, 0) <= 0 for task in running):
                return False
            before = activity.generation
        if self.ready_waiter():
            return False
        with activity:
            return activity.generation == before

    def ready_waiter(self) -> bool:
        """True if some blocked call on some element could go on now (it has not woken yet)."""
        with self._lock:
            elements = list(self._elements.values())
        return any(element.has_ready_waiter() for element in elements)


def describe(space: Space) -> list[dict[str, Any]]:
    """A summary of every live element, for monitoring."""
    rows = []
    for eid, element in space.elements():
        try:
            rows.append(
                {
                    "id": eid,
                    "template": repr(space.template_of(eid)),
                    "first": element.first(),
                    "last": element.last(),
                    "delta": element.delta(),
                    "stored": element.stored(),
                    "waiting": element.queued(),
                    "xfunction": space.xfunction_of(eid) or "",
                }
            )
        except PastSetError:  # deleted or ended meanwhile
            continue
    return rows
