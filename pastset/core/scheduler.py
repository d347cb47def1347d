"""The scheduler: clients, spawned tasks, halt, and the end of a run.

Clients register their specs and then pull work: an idle client asks for the
next task and blocks until there is one, so faster clients simply come back for
more (load balancing by availability, as in pyPastSet).  ``halt`` lets every
client stop once the spawns issued before it are handed out.

When the application of a run exits, :meth:`Scheduler.finish` waits until the
run is quiet — no task queued for a live client, and every running task blocked
in an operation that nothing left can complete — and then ends the run, so that
no work still in progress is cut off.  No network code lives here.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pastset.core.space import Space, describe
from pastset.core.stall import decide
from pastset.errors import PastSetTimeoutError, PastSetTypeError, RunEndedError
from pastset.psbin import check_spawn_target, find_spawnable

__all__ = ["ClientInfo", "Scheduler", "Task"]

log = logging.getLogger(__name__)

SAMPLE_EVERY = 1.0  # seconds between samples of the elements' counters, for the run report
MAX_SAMPLES = 3600  # beyond this, every other sample is dropped: a long run keeps its shape


@dataclass
class Task:
    """One spawned application run and what became of it."""

    id: str
    app: str
    args: list[str]
    spawned_at: float
    state: str = "queued"  # queued, running, done, failed, stopped
    client: str = ""
    host: str = ""
    started: float | None = None
    ended: float | None = None
    status: int | None = None
    stderr_tail: str = ""


@dataclass
class ClientInfo:
    """A registered client and its specs."""

    id: str
    specs: dict[str, Any]
    registered_at: float
    alive: bool = True
    running: set[str] = field(default_factory=set)
    done: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    gone_reason: str = ""


def _full(client: ClientInfo) -> bool:
    """True if every slot of ``client`` runs a task (a client that did not say its slots has one free)."""
    slots = client.specs.get("slots")
    return isinstance(slots, int) and len(client.running) >= slots


def normalise_args(args: object) -> list[str]:
    """Spawn arguments as pyPastSet took them: a string, or items converted with str."""
    if args is None:
        return []
    if isinstance(args, str):
        return args.split() if args.strip() else []
    if isinstance(args, (list, tuple)):
        return [str(a) for a in args]
    raise PastSetTypeError(f"spawn arguments must be a string or a list/tuple, got {type(args).__name__}")


class Scheduler:
    """Hands spawned tasks to idle clients and decides when a run is over."""

    def __init__(self, space: Space, check_apps: bool = True, deadtime: float = 6.0) -> None:
        self.space = space
        self.check_apps = check_apps
        self.deadtime = deadtime
        self.started = time.time()
        self._paused = False
        self._stop_reason = ""
        self._rates: collections.deque[tuple[float, int, int]] = collections.deque(maxlen=6)
        self._cond = threading.Condition()
        self._queue: collections.deque[Task] = collections.deque()
        self._tasks: dict[str, Task] = {}
        self._clients: dict[str, ClientInfo] = {}
        self._task_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self._halted = False
        self._ended = False
        #: slots of each client waiting in next_task now (free to take a task)
        self._idle: collections.Counter[str] = collections.Counter()
        #: the space's counters when last looked at, and when they last changed (for stall)
        self._mark: tuple[Any, ...] = ()
        self._mark_at = time.monotonic()
        self.ended_at: float | None = None
        self._samples: list[dict[str, Any]] = []
        self._templates: dict[str, str] = {}
        self._sampled = 0.0
        self._tally: dict[str, dict[str, int]] = {}

    # --------------------------------------------------------------- clients
    def register(self, specs: dict[str, Any]) -> str:
        """Record a new client and return its id."""
        with self._cond:
            if self._ended:
                raise RunEndedError("the run has ended; this client is not needed")
            cid = f"c{next(self._client_ids)}"
            self._clients[cid] = ClientInfo(cid, dict(specs), time.time())
            self._cond.notify_all()
        log.info("client %s registered from %s", cid, specs.get("host", "?"))
        return cid

    def client_gone(self, cid: str, reason: str = "client disconnected") -> None:
        """A client left: its running tasks are recorded as failed."""
        with self._cond:
            info = self._clients.get(cid)
            if info is None or not info.alive:
                return
            info.alive = False
            info.gone_reason = reason
            lost = list(info.running)
            info.running.clear()
            for tid in lost:
                task = self._tasks[tid]
                task.state = "failed" if not self._ended else "stopped"
                task.ended = time.time()
                task.stderr_tail = (task.stderr_tail + f"\n[{reason}]").strip()
            self._cond.notify_all()
        for tid in lost:
            self.space.task_gone(tid)
        if lost and not self._ended:
            log.warning("client %s gone (%s); tasks %s failed", cid, reason, ", ".join(lost))

    def node_gone(self, node: str, reason: str) -> list[str]:
        """Host ``node`` left the run (a batch system drained it): give up on its clients as on a dead host.

        A client is on ``node`` when its registered ``node`` (the batch system's
        name) or ``host`` spec is that name.  Returns the ids given up on; they
        are told so at their next heartbeat and stop.
        """
        with self._cond:
            gone = [
                c.id
                for c in self._clients.values()
                if c.alive and node in (c.specs.get("node"), str(c.specs.get("host", "")).split(".")[0])
            ]
        for cid in gone:
            self.client_gone(cid, reason)
        if gone:
            log.warning("clients %s on %s given up: %s", ", ".join(gone), node, reason)
        return gone

    def wait_clients(self, count: int, timeout: float | None = None) -> int:
        """Block until ``count`` clients registered (or timeout); return how many did."""
        until = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._clients) < count and not self._ended:
                remaining = None if until is None else until - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return len(self._clients)

    # ----------------------------------------------------------------- tasks
    def spawn(self, app: str, args: object = None) -> str:
        """Queue ``app`` with ``args`` for the next idle client; return the task id."""
        if not isinstance(app, str) or not app:
            raise PastSetTypeError(f"spawn needs the application's file name, got {app!r}")
        arglist = normalise_args(args)
        if self.check_apps:
            find_spawnable(app, self.space.psbin)  # raises, naming PSBIN
        else:
            check_spawn_target(app)  # module targets and '..' are refused whatever the file system holds
        with self._cond:
            if self._ended:
                raise RunEndedError("the run has ended; no more tasks can be spawned")
            if self._halted:
                log.warning("spawn of %s after halt: no client will run it", app)
            task = Task(f"t{next(self._task_ids)}", app, arglist, time.time())
            self._tasks[task.id] = task
            self._queue.append(task)
            self._cond.notify_all()
        log.debug("spawned %s %s as %s", app, arglist, task.id)
        return task.id

    def halt(self) -> None:
        """No more tasks: clients stop once the earlier spawns are dispatched."""
        with self._cond:
            self._halted = True
            self._cond.notify_all()

    def next_task(self, cid: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The next task for client ``cid``, or None when it should stop.

        Blocks while there is nothing to do; raises PastSetTimeoutError after
        ``timeout`` seconds so a caller can check on other things.
        """
        until = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            info = self._clients.get(cid)
            if info is None:
                raise PastSetTypeError(f"unknown client {cid!r}; register first")
            while True:
                if self._ended or not info.alive:
                    return None
                if self._queue and not self._paused:
                    task = self._queue.popleft()
                    task.state = "running"
                    task.client = cid
                    task.host = str(info.specs.get("host", ""))
                    task.started = time.time()
                    info.running.add(task.id)
                    self._cond.notify_all()
                    return {"id": task.id, "app": task.app, "args": task.args}
                if self._halted:
                    return None
                remaining = None if until is None else until - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise PastSetTimeoutError("no task yet")
                self._idle[cid] += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._idle[cid] -= 1

    def task_done(self, cid: str, tid: str, status: int, stderr_tail: str = "") -> None:
        """Record how task ``tid`` ended on client ``cid``."""
        with self._cond:
            task = self._tasks.get(tid)
            info = self._clients.get(cid)
            if task is None or info is None:
                return
            info.running.discard(tid)
            info.done += 1
            task.ended = time.time()
            task.status = status
            task.stderr_tail = stderr_tail
            if self._ended and status != 0:
                task.state = "stopped"
            else:
                task.state = "done" if status == 0 else "failed"
            self._cond.notify_all()
        self.space.task_gone(tid)
        if task.state == "failed":
            log.warning(
                "task %s (%s) on %s failed with status %s", tid, " ".join([task.app, *task.args]), task.host, status
            )

    def heartbeat(self, cid: str) -> bool | None:
        """Client ``cid`` is alive: True; False tells it that it was given up on; None that the run has ended.

        The end of a run is no failure of the client: it is told apart from being
        given up on, so a client that beats just after a successful run ended
        stops quietly (its next_task says None as well).
        """
        with self._cond:
            info = self._clients.get(cid)
            if self._ended:
                return None
            if info is None or not info.alive:
                return False
            info.last_seen = time.monotonic()
            return True

    def check_clients(self) -> list[str]:
        """Give up on clients silent for longer than ``deadtime``; return their ids.

        Also samples the move and observe counters for the rates in :meth:`snapshot`.
        """
        now = time.monotonic()
        self._rates.append((now, self.space.moves, self.space.observes))
        if now - self._sampled >= SAMPLE_EVERY and not self._ended:
            self._sampled = now
            self.sample()
        with self._cond:
            silent = [c.id for c in self._clients.values() if c.alive and now - c.last_seen > self.deadtime]
        for cid in silent:
            self.client_gone(cid, f"no heartbeat for {self.deadtime:g} s: host down or unreachable")
        return silent

    def sample(self) -> None:
        """Record the elements' first and last and the run's counters now (for the run report)."""
        elements = {}
        for row in describe(self.space):
            key = str(row["id"])
            elements[key] = [row["first"], row["last"]]
            self._templates.setdefault(key, row["template"])
        entry = {"t": time.time(), "moves": self.space.moves, "observes": self.space.observes, "elements": elements}
        with self._cond:
            self._samples.append(entry)
            if len(self._samples) > MAX_SAMPLES:
                self._samples = self._samples[::2]

    def record(self) -> dict[str, Any]:
        """Everything the run report shows: the snapshot, the samples, and who changed which element."""
        data = self.snapshot()
        with self._cond:
            samples = list(self._samples)
        data.update(
            run=self.space.name,
            elements=describe(self.space),
            samples=samples,
            templates=dict(self._templates),
            tally=self._tally if self._ended else self.space.tally(),
            ended_at=self.ended_at,
            recorded_at=time.time(),
        )
        return data

    # -------------------------------------------------------- central control
    def pause(self, match: str = "") -> list[int]:
        """Stop the work: hold dispatch and unindexed observes (or only those of elements matching ``match``).

        Moves, indexed observes and monitoring go on; every worker finishes the
        item in hand and takes no next one.
        """
        with self._cond:
            if not match:
                self._paused = True
            self._cond.notify_all()
        touched = self.space.pause(True, match)
        log.warning("run paused%s", f" (elements {touched})" if match else "")
        return touched

    def resume(self, match: str = "") -> list[int]:
        """Release what :meth:`pause` held, in order."""
        with self._cond:
            if not match:
                self._paused = False
            self._cond.notify_all()
        touched = self.space.pause(False, match)
        log.warning("run resumed%s", f" (elements {touched})" if match else "")
        return touched

    def stop(self, reason: str = "the run was stopped") -> None:
        """End the run now, as asked by an operator: clients halt, the app is told."""
        with self._cond:
            self._stop_reason = reason
        log.warning("%s", reason)
        self.end(reason)

    def wait_end(self, timeout: float | None = None) -> str | None:
        """Block until the run ends; return the stop reason ("" if it just ended), None on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ended, timeout):
                return None
            return self._stop_reason

    # ------------------------------------------------------------- the end
    def _quiet(self) -> bool:
        with self._cond:
            if self._queue and any(c.alive and not _full(c) for c in self._clients.values()):
                return False  # a queued task can start (or a slot is on its way back for one)
            running = {tid for c in self._clients.values() for tid in c.running}
        # Queued tasks whose every slot is held by a task blocked for good can never start:
        # then the run is quiet too (they are reported as never run).
        return self.space.quiet(running)

    def finish(self, wait: bool = True, timeout: float | None = None) -> bool:
        """End the run, after it has gone quiet if ``wait``; True if it was quiet.

        Quiet means: every running task blocked in an operation that no one
        left can complete, and no task queued that a live client has a free
        slot for (a task queued behind slots blocked for good never runs).
        """
        until = None if timeout is None else time.monotonic() + timeout
        quiet = False
        while wait:
            before = self.space.generation
            if self._quiet():
                quiet = True
                break
            remaining = None if until is None else until - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            with self.space.activity:
                if self.space.generation == before:
                    self.space.activity.wait(1.0 if remaining is None else min(1.0, remaining))
        self.end()
        return quiet

    def end(self, reason: str = "the run has ended") -> None:
        """End the run now: clients stop, blocked operations raise RunEndedError."""
        if not self._ended:
            self.sample()
            self._tally = self.space.tally()  # before the end itself counts as a change
        with self._cond:
            first = not self._ended
            self._ended = True
            if self.ended_at is None:
                self.ended_at = time.time()
            if self._queue and first:  # said once, however often the run is ended
                log.warning("%d spawned task(s) never ran: %s", len(self._queue), ", ".join(t.app for t in self._queue))
            self._cond.notify_all()
        self.space.end(reason)

    @property
    def ended(self) -> bool:
        """True once the run has ended."""
        return self._ended

    def stall(self, app_pid: int | None, grace: float) -> dict[str, Any] | None:
        """Why the run can never progress (``Stall.as_dict()``), or None if it still may.

        Reads who waits on what from ``space.waits``, the task states and free
        client slots from here, and the space's counters to tell how long
        nothing has changed; :func:`pastset.core.stall.decide` makes the call.
        Meant to be asked every fraction of a second by whoever runs the app.
        """
        space = self.space
        now = time.monotonic()
        mark = (space.generation, space.moves, space.observes, space.waits.changed)
        if mark != self._mark:
            self._mark, self._mark_at = mark, now
        if now - self._mark_at < grace or not len(space.waits):
            return None  # something changed lately, or nobody waits: the cheap, common answer
        with self._cond:
            if self._ended or self._paused or space.paused or space.held:
                return None  # ended, or held by an operator: not for us to judge
            free = any(c.alive and self._idle[c.id] > 0 for c in self._clients.values())
            dispatchable = bool(self._queue) and free
            tasks = [asdict(t) for t in self._tasks.values()]
        waits = [w.describe() for w in space.waits.snapshot()]
        found = decide(
            waits,
            tasks,
            now=time.time(),
            quiet_for=now - self._mark_at,
            grace=grace,
            app_pid=app_pid,
            dispatchable=dispatchable,
            ready_waiter=space.ready_waiter(),
        )
        return None if found is None else found.as_dict()

    def failed(self) -> list[dict[str, Any]]:
        """The tasks that failed so far, oldest first (plain data)."""
        with self._cond:
            return [asdict(t) for t in self._tasks.values() if t.state == "failed"]

    # ------------------------------------------------------------ monitoring
    def snapshot(self) -> dict[str, Any]:
        """Clients and tasks as plain data (for pypsmanage and tests)."""
        with self._cond:
            clients = []
            now = time.monotonic()
            for c in self._clients.values():
                row = asdict(c)
                row["running"] = sorted(c.running)
                row["silent_s"] = round(now - row.pop("last_seen"), 1)
                clients.append(row)
            tasks = [asdict(t) for t in self._tasks.values()]
            rates = list(self._rates)
        moves_rate = observes_rate = 0.0
        if len(rates) >= 2 and rates[-1][0] > rates[0][0]:
            span = rates[-1][0] - rates[0][0]
            moves_rate = (rates[-1][1] - rates[0][1]) / span
            observes_rate = (rates[-1][2] - rates[0][2]) / span
        return {
            "clients": clients,
            "tasks": tasks,
            "halted": self._halted,
            "ended": self._ended,
            "paused": self._paused,
            "stopped": self._stop_reason,
            "started": self.started,
            "moves": self.space.moves,
            "observes": self.space.observes,
            "moves_per_s": round(moves_rate, 1),
            "observes_per_s": round(observes_rate, 1),
        }
