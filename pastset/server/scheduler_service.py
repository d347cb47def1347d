"""The scheduler as a Pyro5 object: clients register and ask for tasks, pypsrun and pypsmanage steer.

Replies are plain msgpack data.  The connection of a registering client is
remembered, so a client whose connection ends is noticed at once.
"""

from __future__ import annotations

from typing import Any

import Pyro5.api

from pastset.core.scheduler import Scheduler
from pastset.core.space import describe
from pastset.server.service import pyro_connection

__all__ = ["SchedulerService"]


@Pyro5.api.expose
class SchedulerService:
    """The Pyro5 face of a :class:`~pastset.core.scheduler.Scheduler` (plain msgpack data)."""

    def __init__(self, scheduler: Scheduler, admin: Any = None) -> None:
        self.scheduler = scheduler
        #: With a Redis store: its StoreAdmin, which reads the element statistics from Redis.
        self.admin = admin

    def register(self, specs: dict[str, Any]) -> str:
        """Register a client; the connection is remembered so a lost client is noticed."""
        cid = self.scheduler.register(specs)
        conn = pyro_connection()
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

    def heartbeat(self, cid: str) -> bool | None:
        """A client is alive; False means the run gave up on it (it should stop), None that the run ended."""
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

    def health(self, app_pid: int | None = None, grace: float = 2.0, failed: bool = False) -> dict[str, Any]:
        """What pypsrun watches while the app runs: ``stall`` (Scheduler.stall), and ``failed`` tasks if asked."""
        return {"stall": self.scheduler.stall(app_pid, grace), "failed": self.scheduler.failed() if failed else []}

    def record(self) -> dict[str, Any]:
        """What the run report needs: the snapshot plus the sampled counters (see Scheduler.record)."""
        return self.scheduler.record()

    def snapshot(self) -> dict[str, Any]:
        """Clients, tasks, elements and blocked operations of the run."""
        data = self.scheduler.snapshot()
        data["elements"] = self.admin.describe() if self.admin is not None else describe(self.scheduler.space)
        data["waiting"] = [w.describe() for w in self.scheduler.space.waits.snapshot()]
        data["run"] = self.scheduler.space.name
        return data
